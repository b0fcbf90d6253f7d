"""The shapes of the records a run directory holds (``metrics.jsonl``'s lines and ``progress.json``), declared once;
:mod:`densenet_ray.train.run.directory` reads and writes them. Imports nothing of the package, so the option checks
can name the figures runs record."""

from __future__ import annotations

from dataclasses import dataclass

TOP5_CLASSES = 5  # top-5 error is recorded only for more classes than this: with fewer, every label is in the top 5


@dataclass(frozen=True)
class EpochRecord:
    """What rank 0 reports after each epoch (errors are fractions; rates are images per second over all ranks).
    ``test_error`` is the error runs are ranked by: top-1, or for multi-label data 1 - mean AUROC (``test_auroc``,
    beside mean average precision, macro F1 at 0.5 and each class's AUROC)."""

    epoch: int
    epochs: int
    step: int
    loss: float
    train_error: float | None = None
    test_loss: float | None = None
    test_error: float | None = None
    test_top5_error: float | None = None  # single-label data of more than 5 classes only
    best_test_error: float | None = None
    test_samples: int | None = None
    ema_test_loss: float | None = None  # the weights' moving average (``--ema``), evaluated beside the raw weights
    ema_test_error: float | None = None
    ema_test_top5_error: float | None = None
    test_auroc: float | None = None
    test_map: float | None = None
    test_f1: float | None = None
    test_auroc_by_class: dict[str, float | None] | None = None
    ema_test_auroc: float | None = None
    lr: float | None = None  # the schedule's rate at the epoch's last optimizer step
    mean_lr: float | None = None  # its mean over the epoch's optimizer steps
    images_per_s: float | None = None
    steady_images_per_s: float | None = None
    first_step_time: float | None = None
    first_step_seconds: float | None = None  # worker start to first step, in the epoch an attempt started
    acceleration: str | None = None  # what auto resolved to, e.g. "bf16 autocast, channels_last, compiled"
    seconds_per_iteration: float | None = None
    epoch_seconds: float | None = None
    data_wait_fraction: float | None = None
    skipped_samples: int | None = None
    bad_steps: int | None = None
    peak_memory_mb: float | None = None
    world_size: int | None = None  # the ranks that trained the epoch's last stretch (elastic runs may change it)
    stopped: str | None = None  # why the run ends here, before --epochs (--early-stop, --stop-at-error)
    time: float | None = None


def epoch_wall_seconds(last: EpochRecord, previous: EpochRecord | None = None) -> float | None:
    """What one epoch takes for the run ETA every view shows: the wall time between two successive epoch records
    (training, evaluation and the checkpoint), else the last epoch's training time."""
    if previous is not None and last.time is not None and previous.time is not None and last.time > previous.time:
        return last.time - previous.time
    return last.epoch_seconds


@dataclass(frozen=True)
class BadStepRecord:
    """A line of ``bad-steps.jsonl``, written by rank 0: an optimizer step skipped because its loss or gradients were
    not finite on some rank, the rollback to the last checkpoint that a run of such steps caused, or the end of the
    run when no rollback was left."""

    action: str
    epoch: int
    batch: int
    step: int
    samples: list[str]
    rollbacks: int
    lr_scale: float
    time: float | None = None


@dataclass(frozen=True)
class MidEpochRecord:
    """A mid-epoch checkpoint's report (``--checkpoint-every-steps``); ``epoch`` is 0-indexed, as the state's."""

    epoch: int
    step: int
    loss: float
    mid_epoch: bool = True
    world_size: int | None = None
    time: float | None = None


@dataclass(frozen=True)
class PreemptionRecord:
    """The preemption notice, and the checkpoint the run wrote at once: the nodes going and the ranks on them, the
    deadline (seconds since the epoch), and where training stood (``epoch`` 0-indexed, ``step`` global)."""

    epoch: int
    step: int
    nodes: list[str]
    ranks: list[int]
    deadline: float
    world_size: int | None = None
    preempted: bool = True
    time: float | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """Rank 0's record of a worker group starting: the first start and every restart, its world size, and where in
    training it starts (``epoch`` 0-indexed and the global batch, as the checkpoint's)."""

    world_size: int
    epoch: int
    batch: int
    resumed: bool
    attempt: bool = True
    time: float | None = None


@dataclass(frozen=True)
class ProfileRecord:
    """Rank 0's summary of its ``--profile-steps`` trace: global steps ``first`` to ``last`` over ``seconds``; the
    shares of that time spent waiting for the data loader and in DDP's collectives; ``operators`` (device kernels on
    a GPU) as [name, self milliseconds, share of all self time, calls]; ``traces``: where every rank's trace is."""

    first: int
    last: int
    seconds: float
    data_share: float
    communication_share: float
    operators: list[tuple[str, float, float, int]]
    device: str
    traces: str = ""
    profile: bool = True
    time: float | None = None


@dataclass(frozen=True)
class ProgressRecord:
    """Rank 0's position in the current epoch (``epoch`` 1-indexed, ``batch`` done of ``batches``). Speed and ETA
    count from the end of the epoch's first step; until a later step is measured they are None and
    ``first_step_seconds`` says how long the first step took (start-up and compilation included)."""

    epoch: int
    batch: int
    batches: int
    loss: float
    images_per_s: float | None
    eta_seconds: float | None
    time: float
    first_step_seconds: float | None = None
