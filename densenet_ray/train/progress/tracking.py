"""Where rank 0's metrics go besides ``metrics.jsonl``: TensorBoard event files in every run directory, and MLflow
and Weights & Biases when ``--log`` names them, through Ray's own integrations (``ray.air.integrations``).

TensorBoard (``torch.utils.tensorboard``) gets the loss over the last ``log_every_steps`` steps and the learning
rate every ``log_every_steps`` steps, and every numeric field of the epoch record at the end of each epoch, all at
the global step (as PyTorch Lightning does), so a resumed attempt can hide what the lost one wrote after its
checkpoint (``purge_step``). A sweep's trials are run directories under the sweep's, so
``tensorboard --logdir <sweep>`` compares them. TensorBoard writes local files only: for ``s3://`` runs the files
are written in a local folder and uploaded into ``<run>/tensorboard/`` with every epoch's checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
from typing import Any

from densenet_ray.data.storage import LocalStorage, StorageError
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.config.tracking_uri import connection_uri
from densenet_ray.train.config.values import trackers
from densenet_ray.train.engine import TrainStats
from densenet_ray.train.run.directory import TENSORBOARD_DIR, EpochRecord, RunDirectory

MLFLOW_EXPERIMENT = "densenet-ray"
WANDB_PROJECT = "densenet-ray"


class Tracking:
    """Rank 0's writers: TensorBoard always, MLflow and W&B as ``config.options.log`` asks; ``global_step`` is where
    this attempt starts (after a resume, later events hide the lost attempt's)."""

    def __init__(self, config: ResolvedConfig, global_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.every = config.options.log_every_steps
        self.run = RunDirectory(config.run_url)
        local = isinstance(self.run.storage, LocalStorage)
        self.folder = self.run.storage.join(TENSORBOARD_DIR) if local else tempfile.mkdtemp(prefix="tensorboard-")
        self.upload = not local
        # A resumed attempt hides what the lost one logged after its checkpoint: steps above ``global_step`` (the
        # checkpoint's own epoch record, logged at ``global_step``, stays).
        self.writer = SummaryWriter(self.folder, purge_step=global_step + 1 if global_step else None)
        self.services = [_start_service(name, config, self.run) for name in trackers(config.options.log)]
        self._last = (0.0, 0)  # the epoch's loss sum and samples at the last step logged

    def new_epoch(self) -> None:
        self._last = (0.0, 0)

    def step(self, global_step: int, stats: TrainStats, lr: float) -> None:
        """Every ``log_every_steps`` steps: the loss since the last logged step and the learning rate."""
        if global_step % self.every:
            return
        loss_sum, samples = stats.loss_sum, stats.samples  # one read of the device's sums per logged step
        if samples > self._last[1]:
            metrics = {"train/loss": (loss_sum - self._last[0]) / (samples - self._last[1]), "train/lr": lr}
            self._log(metrics, global_step)
        self._last = (loss_sum, samples)

    def epoch(self, record: EpochRecord, global_step: int) -> None:
        """Every number in the epoch record, under ``epoch/`` (a mapping's, such as each class's AUROC, under
        ``epoch/<key>/<name>``); then the files go to the run directory."""
        flat: dict[str, Any] = {}
        for key, value in dataclasses.asdict(record).items():
            if isinstance(value, dict):
                flat.update({f"{key}/{_tag(name)}": number for name, number in value.items()})
            else:
                flat[key] = value
        numbers = {
            f"epoch/{key}": float(value)
            for key, value in flat.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("time", "epochs")
        }
        self._log(numbers, global_step)
        self.writer.flush()
        if self.upload:
            self._upload()

    def close(self, failed: bool = False) -> None:
        """Flush and upload TensorBoard's files; end the services' runs (as failed when training raised)."""
        self.writer.close()
        if self.upload:
            self._upload()
            shutil.rmtree(self.folder, ignore_errors=True)
        for service in self.services:
            service.finish(failed)

    def _log(self, metrics: dict[str, float], global_step: int) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, global_step)
        for service in self.services:
            service.log(metrics, global_step)

    def _upload(self) -> None:
        for name in sorted(os.listdir(self.folder)):
            with open(os.path.join(self.folder, name), "rb") as handle, contextlib.suppress(StorageError, OSError):
                self.run.storage.write_bytes(f"{TENSORBOARD_DIR}/{name}", handle.read())  # logs only: never fatal


class _MLflow:
    """An MLflow run started by ``ray.air.integrations.mlflow.setup_mlflow``: its parameters are the options, whose
    tracking URI has no password; the password, when the URI has one, comes from this worker's environment
    (:func:`~densenet_ray.train.config.tracking_uri.connection_uri`)."""

    def __init__(self, config: ResolvedConfig) -> None:
        from ray.air.integrations.mlflow import setup_mlflow

        tags = {"run_dir": config.run_url}
        assert config.options.tracking_uri is not None, "resolve() sets the tracking URI with --log mlflow"
        self.mlflow = setup_mlflow(
            config.flat(),
            tracking_uri=connection_uri(config.options.tracking_uri),
            experiment_name=MLFLOW_EXPERIMENT,
            run_name=config.options.name,
            create_experiment_if_not_exists=True,
            tags=tags,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({key.replace("/", "_"): value for key, value in metrics.items()}, step=step)

    def finish(self, failed: bool) -> None:
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


class _WandB:
    """A W&B run started by ``ray.air.integrations.wandb.setup_wandb`` (``WANDB_MODE=offline`` works without an
    account; its files go beside TensorBoard's)."""

    def __init__(self, config: ResolvedConfig, folder: str) -> None:
        from ray.air.integrations.wandb import setup_wandb

        self.run = setup_wandb(
            config.flat(),
            project=WANDB_PROJECT,
            name=config.options.name,
            dir=folder,
            resume="allow",
            id=_wandb_id(config.run_url),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _wandb_id(run_url: str) -> str:
    """A stable W&B run id for a run directory, so a resumed attempt continues the same W&B run."""
    import hashlib

    return hashlib.sha256(run_url.encode()).hexdigest()[:16]


def _start_service(name: str, config: ResolvedConfig, run: RunDirectory) -> _MLflow | _WandB:
    if name == "mlflow":
        return _MLflow(config)
    folder = run.storage.join("") if isinstance(run.storage, LocalStorage) else tempfile.mkdtemp(prefix="wandb-")
    return _WandB(config, folder)


def _tag(name: str) -> str:
    """A class name as a metric name's part: what MLflow accepts (letters, digits, ``_-. /``), the rest as ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", name)
