"""Where and how a run executes, and where it is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.choices import Precision
from densenet_ray.train.config.declaration import Group, Range, option
from densenet_ray.train.config.groups.common import AT_LEAST_ONE, FIXED, NOT_NEGATIVE, OWNED, SHARE, SHARED


@dataclass(frozen=True)
class ExecutionOptions:
    """The ``execution`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "execution"  # every field below is in config.yaml's execution group

    workers: int = option(
        2,
        "Ray Train workers: N, or MIN-MAX to train elastically on as many as the "
        "cluster has (a lost node's workers are dropped, the run goes on)",
        range=AT_LEAST_ONE,
        metavar="[MIN-]MAX",
        cli=(("type", str),),
    )
    min_workers: int | None = option(
        None,
        "elastic: the least workers (given as --workers MIN-MAX)",
        flag="--workers",
        default_text="--workers",
    )
    gpu: bool = option(False, "one GPU per worker (NCCL DDP)")
    cpus_per_worker: int = option(1, "CPUs each Ray Train worker reserves", range=AT_LEAST_ONE)
    worker_resources: dict[str, float] | None = option(
        None,
        "custom resources each worker also needs, e.g. '{\"accelerator_type:A100\": 0.001}'",
        metavar="JSON",
    )
    precision: Precision = option(
        "auto",
        "auto: bf16 autocast where the worker's hardware multiplies "
        "bf16 natively, else fp32; fp32 is the exact reference",
        **FIXED,
    )
    channels_last: bool | None = option(
        None,
        "channels-last memory format",
        negative="--no-channels-last",
        negative_help="NCHW memory format",
        default_text="auto, where faster",
    )
    compile: bool | None = option(
        None,
        "torch.compile the model",
        negative="--no-compile",
        negative_help="run the model eagerly",
        default_text="auto, for runs of 500+ steps where inductor has a compiler",
    )
    sync_bn: bool = option(False, "synchronise BatchNorm statistics across GPU workers", **FIXED)
    max_failures: int = option(
        0,
        "worker-group restarts Ray may make (-1: unlimited)",
        **OWNED,
        range=Range(-1, note=" (-1: unlimited)"),
    )
    max_preemption_failures: int = option(
        -1,
        "preemptions the run resumes from, counted apart from --max-failures (-1: no limit; 0: a preemption ends it)",
        **OWNED,
        range=Range(-1, note=" (-1: no limit)"),
    )
    max_bad_steps: int = option(
        25,
        "optimizer steps in a row whose loss or gradients are not finite (skipped on every rank) before the run "
        "goes back to its last checkpoint; the default lets fp16's gradient scaler settle",
        range=AT_LEAST_ONE,
        metavar="K",
    )
    max_rollbacks: int = option(
        2,
        "times the run goes back to its last checkpoint after --max-bad-steps skips in a row (0: it ends instead)",
        range=NOT_NEGATIVE,
        metavar="N",
    )
    rollback_lr_scale: float = option(
        0.5,
        "each rollback multiplies the learning rate by F",
        range=Range(0.0, 1.0, low_open=True, high_open=True),
        metavar="F",
    )
    checkpoint_every_steps: int = option(
        0, "also checkpoint every N optimizer steps within an epoch", **OWNED, range=NOT_NEGATIVE
    )
    early_stop: str = option(
        "",
        "end the run once METRIC of the epoch record has not improved for PATIENCE epochs, e.g. test_error:10",
        metavar="METRIC:PATIENCE",
    )
    stop_at_error: float | None = option(
        None,
        "end the run once its test error is X or less (with several labels an image: 1 minus mean AUROC)",
        range=SHARE,
        metavar="X",
    )
    profile_steps: str = option(
        "",
        "trace global steps A-B with torch.profiler on every rank (the run's tensorboard/profile/) and print the "
        "operators that took the most time",
        metavar="A-B",
    )
    keep_checkpoints: int = option(2, "checkpoints kept in the run directory", range=AT_LEAST_ONE)
    limit_train_batches: int = option(0, "at most N training batches per epoch (debugging; 0: all)", range=NOT_NEGATIVE)
    limit_eval_batches: int = option(0, "at most N evaluation batches (debugging; 0: all)", range=NOT_NEGATIVE)
    limit_epochs: int = option(
        0,
        "end the run after N epochs, its learning-rate schedule still spanning --epochs (debugging; 0: all)",
        range=NOT_NEGATIVE,
        metavar="N",
    )


@dataclass(frozen=True)
class StorageOptions:
    """The ``storage`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "storage"  # every field below is in config.yaml's storage group

    storage: str | None = option(
        None,
        "run storage: a local path or s3://",
        **OWNED,
        key="root",
        default_text="~/densenet-ray/runs",
    )
    name: str | None = option(
        None,
        "run name; the same name resumes the run (with options that do not change what it computes)",
        **OWNED,
        default_text="<dataset>-<model>-<time>",
    )
    trust_storage: bool = option(
        False,
        "s3:// storage that only you, and those you trust, can write: workers load the compile artifacts a run keeps "
        "there and a sweep of the same name restores from it (both unpickle, which runs code); local storage needs "
        "no flag",
        **SHARED,
    )
