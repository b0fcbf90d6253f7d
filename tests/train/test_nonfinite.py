"""Non-finite steps on real CIFAR-10 images: in one process, a batch whose images are not finite (as a bad sample
decodes) is skipped and leaves the model as if it had never come; on the suite's Ray head, a learning rate that
makes the loss overflow rolls the run back to its last checkpoint at a lower rate, or ends it in one line."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.models import create_model
from densenet_ray.train.engine import StepContext, train_epoch
from densenet_ray.train.nonfinite import NonFiniteSteps, StepGuard
from tests.train.run_helpers import epoch_records, small_run, stderr_lines, train


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)


def test_a_batch_that_is_not_finite_is_skipped_as_if_it_never_came(cifar_shards) -> None:
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=16)
    reference = copy.deepcopy(model)
    batches = list(make_loader(PipelineConfig(cifar_shards, "train", 50, loader_workers=0), cifar_eval()))[:4]
    images, labels = batches[1]
    poisoned = [batches[0], (images * math.inf, labels), *batches[2:]]
    guard = StepGuard(max_consecutive=2, buffers=list(model.buffers()))
    stats = train_epoch(StepContext(model, torch.device("cpu"), optimizer=_sgd(model), guard=guard), poisoned)
    assert (guard.skipped, guard.consecutive, stats.steps, stats.samples) == (1, 0, 3, 150)
    assert math.isfinite(stats.loss)
    # the same batches without the poisoned one: the same weights, optimizer state and BatchNorm statistics
    expected = train_epoch(
        StepContext(reference, torch.device("cpu"), optimizer=_sgd(reference)), batches[:1] + batches[2:]
    )
    assert stats.loss == pytest.approx(expected.loss, rel=1e-6)
    for (name, value), wanted in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(value, wanted), name


def test_too_many_in_a_row_end_the_epoch_at_the_same_batch(cifar_shards) -> None:
    model = create_model("densenet_bc100_k12", depth=16)
    batches = list(make_loader(PipelineConfig(cifar_shards, "train", 50, loader_workers=0), cifar_eval()))[:5]
    poisoned = batches[:2] + [(images * math.nan, labels) for images, labels in batches[2:]]
    skipped: list[int] = []
    guard = StepGuard(max_consecutive=2, on_skip=skipped.append, buffers=list(model.buffers()))
    with pytest.raises(NonFiniteSteps) as raised:
        train_epoch(StepContext(model, torch.device("cpu"), optimizer=_sgd(model), guard=guard), poisoned)
    assert (raised.value.count, raised.value.batch, skipped) == (2, 3, [2, 3])
    assert all(torch.isfinite(value).all() for value in model.state_dict().values() if value.is_floating_point())


OVERFLOW = ["--lr", "1e30", "--epochs", "2", "--limit-train-batches", "3", "--limit-eval-batches", "1"]
OVERFLOW += ["--max-bad-steps", "2"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("module_cluster")
def test_an_overflowing_rate_rolls_back_at_a_lower_rate_and_finishes_every_epoch(cifar_shards, tmp_path) -> None:
    args = small_run(cifar_shards, tmp_path, name="overflow")
    completed = train(*args, *OVERFLOW, "--max-rollbacks", "1", "--rollback-lr-scale", "1e-30")
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = Path(tmp_path) / "overflow"
    lines = [json.loads(line) for line in (run / "bad-steps.jsonl").read_text().splitlines()]
    actions = [line["action"] for line in lines]
    # the first step at 1e30 is applied (its gradients were finite); the next two are not, and the run goes back
    assert actions == ["skipped", "skipped", "rolled back"], lines
    assert [line["batch"] for line in lines] == [1, 2, 2] and lines[-1]["rollbacks"] == 1
    assert lines[-1]["lr_scale"] == pytest.approx(1e-30)
    for line in lines[:2]:  # both ranks' 25 samples, named by their keys in the shards
        assert len(line["samples"]) == len(set(line["samples"])) == 50
    records = epoch_records((run / "metrics.jsonl").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    assert [r["bad_steps"] for r in records] == [0, 0]  # the skipped steps went with the rollback
    # 1e30 times 1e-30 in the first epoch, as the schedule lowers it after
    assert records[0]["mean_lr"] == pytest.approx(1.0) and 0 < records[1]["mean_lr"] < 1
    last = sorted(run.glob("checkpoint_2*"))[-1]
    weights = torch.load(last / "state.pt", weights_only=True)["model"]
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())


@pytest.mark.integration
@pytest.mark.usefixtures("module_cluster")
def test_with_no_rollback_left_the_run_ends_in_one_line(cifar_shards, tmp_path) -> None:
    completed = train(*small_run(cifar_shards, tmp_path, name="ends"), *OVERFLOW, "--max-rollbacks", "0")
    lines = stderr_lines(completed)
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr[-3000:]
    bad_steps = Path(tmp_path) / "ends" / "bad-steps.jsonl"
    ended = json.loads(bad_steps.read_text().splitlines()[-1])
    assert ended["action"] == "ended" and len(ended["samples"]) == 50
    assert lines[0].startswith(
        "error: run ends ended at step 3 (epoch 1, batch 3): 2 optimizer steps in a row had a non-finite loss or "
        f"gradient after 0 rollback(s); the last one's samples: {', '.join(ended['samples'][:5])} and 45 more "
        f"(every skipped step's are in {bad_steps})"
    ), lines[0]
