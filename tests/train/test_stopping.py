"""``--early-stop METRIC:PATIENCE`` and ``--stop-at-error X``: parsing, the one-line refusals, the decision from each
figure's checkpointed best, and that best surviving a checkpoint."""

from __future__ import annotations

import pytest
import torch

from densenet_ray.data.reading.epoch_plan import Layout
from densenet_ray.errors import UserError
from densenet_ray.train.checkpoint.state import Position, TrainingState, restore, save_checkpoint
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.stopping import EarlyStop, parse_early_stop, stop_reason, update_bests


def _records(errors: list[float], auroc: list[float] | None = None) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "loss": 1.0 / epoch,
            "test_error": error,
            **({"test_auroc": auroc[epoch - 1]} if auroc else {}),
        }
        for epoch, error in enumerate(errors, start=1)
    ]


def _stops_after(errors: list[float], early_stop: str = "", stop_at_error: float | None = None, **kw) -> int | None:
    """The epoch after which a run with these per-epoch figures stops, or None when it runs them all."""
    bests: dict = {}
    for record in _records(errors, **kw):
        bests = update_bests(bests, record)
        if stop_reason(early_stop, stop_at_error, bests, record["epoch"]):
            return record["epoch"]
    return None


def test_parse_early_stop() -> None:
    assert parse_early_stop("test_error:10") == EarlyStop("test_error", 10)
    assert parse_early_stop(" ema_test_auroc:3 ") == EarlyStop("ema_test_auroc", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test_error", "--early-stop 'test_error' must be METRIC:PATIENCE, e.g. test_error:10"),
        (
            "accuracy:3",
            "--early-stop 'accuracy:3': 'accuracy' is not a test figure of the epoch record; use one of: test_loss,",
        ),
        # a rank's own training loss: each rank would decide on its own figure
        ("loss:3", "--early-stop 'loss:3': 'loss' is not a test figure of the epoch record; use one of: test_loss,"),
        ("test_error:0", "--early-stop 'test_error:0': PATIENCE must be a whole number of epochs, at least 1"),
        ("test_error:x", "--early-stop 'test_error:x': PATIENCE must be a whole number of epochs, at least 1"),
        ("ema_test_error:2", "--early-stop 'ema_test_error:2': ema_test_error is recorded with --ema only"),
    ],
)
def test_bad_early_stop_is_one_line(text, message) -> None:
    with pytest.raises(UserError) as raised:
        TrainConfig(dataset="cifar10", early_stop=text).validate()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_figure_the_runs_records_lack_is_refused_once_the_data_is_known() -> None:
    with pytest.raises(UserError, match="test_auroc is a multi-label figure; use test_error or test_loss"):
        resolve(TrainConfig(dataset="cifar10", early_stop="test_auroc:5"), check_weights=False)
    with pytest.raises(UserError, match=r"--stop-at-error 1.5 must be in \[0.0, 1.0\]"):
        TrainConfig(dataset="cifar10", stop_at_error=1.5).validate()


def test_patience_counts_epochs_since_the_best_and_a_tie_is_no_progress() -> None:
    assert _stops_after([0.5, 0.4, 0.45, 0.41, 0.39, 0.6], "test_error:2") == 4  # best 0.4 at epoch 2
    assert _stops_after([0.5, 0.4, 0.45, 0.41, 0.39, 0.6], "test_error:3") is None  # 0.39 at epoch 5 came in time
    assert _stops_after([0.5, 0.5], "test_error:1") == 2
    assert _stops_after([0.5, 0.4, 0.3], "test_error:1") is None


def test_higher_is_better_for_auroc_and_stop_at_error_reads_the_best() -> None:
    assert _stops_after([0.3, 0.3, 0.3], "test_auroc:1", auroc=[0.7, 0.8, 0.75]) == 3
    assert _stops_after([0.5, 0.2, 0.3], stop_at_error=0.25) == 2
    assert _stops_after([0.5, 0.3], stop_at_error=0.25) is None
    bests = update_bests({}, {"epoch": 2, "test_error": 0.2})
    assert stop_reason("", 0.25, bests, 2) == "test_error 0.2000 at epoch 2 reached --stop-at-error 0.25"
    assert stop_reason("test_error:3", None, bests, 5) == (
        "test_error has not improved for 3 epoch(s) (best 0.2000 at epoch 2; --early-stop test_error:3)"
    )


def test_the_bests_survive_a_checkpoint(tmp_path) -> None:
    """A resumed run decides from the same bests: they are saved with the position and restored."""
    config = resolve(TrainConfig(dataset="cifar10", depth=10, storage=str(tmp_path), name="r"), check_weights=False)
    model = torch.nn.Linear(2, 2)
    state = TrainingState(model, torch.optim.SGD(model.parameters(), lr=0.1))
    state.position = Position(epoch=3, global_step=30, bests=update_bests({}, {"epoch": 2, "test_error": 0.25}))
    layout = Layout(1, 0, 50)
    save_checkpoint(state, config, 0, layout, str(tmp_path))
    restored = TrainingState(model, torch.optim.SGD(model.parameters(), lr=0.1))

    def read(name: str) -> bytes | None:
        path = tmp_path / name
        return path.read_bytes() if path.exists() else None

    restore(restored, read, 0, layout, torch.device("cpu"))
    assert restored.position.bests == {"test_error": (0.25, 2)}
    assert stop_reason("test_error:1", None, restored.position.bests, restored.position.epoch) is not None


def test_limit_epochs_ends_the_run_after_that_many_epochs_whatever_its_figures() -> None:
    from densenet_ray.train.stopping import stop_reason

    assert stop_reason("", None, {}, 1, limit_epochs=2) is None
    assert stop_reason("", None, {"test_error": (0.9, 1)}, 2, limit_epochs=2) == "--limit-epochs 2"
    assert stop_reason("", None, {}, 5) is None  # 0: every epoch
