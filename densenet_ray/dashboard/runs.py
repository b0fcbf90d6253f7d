"""Training runs as their storage shows them: ``config.yaml``, ``metrics.jsonl`` (one line per epoch) and
``progress.json`` (rank 0's in-epoch progress) under each run directory, local or ``s3://``.

A :class:`StorageScanner` finds the run and sweep directories under a storage root and reads each run, re-reading a
file only when the listing shows its size changed, so polling a root of finished runs costs one listing. A file
without its shape makes the run :class:`~densenet_ray.dashboard.stored.Unreadable`, naming the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from densenet_ray.dashboard.snapshot import RunRow
from densenet_ray.dashboard.stored import Unreadable, record_problem
from densenet_ray.data.storage import ObjectInfo, Storage, StorageError, child_url, open_storage
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.run.directory import (
    CONFIG_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    AttemptRecord,
    EpochRecord,
    PreemptionRecord,
    ProgressRecord,
    parse_progress,
    parse_records,
    read_config_document,
)
from densenet_ray.train.run.record_shapes import epoch_wall_seconds
from densenet_ray.tune.report import SWEEP_FILE, TRIALS_DIR

STALE_SECONDS = 600.0  # a run whose files have not changed for this long is not running any more


@dataclass
class RunFiles:
    """What a run directory holds, parsed; ``epochs``: how many it is to train."""

    url: str
    config: ResolvedConfig
    epochs: int
    records: list[EpochRecord] = field(default_factory=list)
    progress: ProgressRecord | None = None
    updated: float | None = None
    preemptions: int = 0


TUNE_STATE_PREFIX = "experiment_state-"  # Tune's own state file in the experiment (sweep) directory


@dataclass
class Layout:
    """What one listing of a storage root holds, as paths relative to it: standalone run directories, sweep
    directories, each sweep's trial run directories and its newest Tune state file, and every object's size."""

    runs: list[str]
    sweeps: list[str]
    sizes: dict[str, int]
    trials: dict[str, list[str]] = field(default_factory=dict)
    tune_state: dict[str, str] = field(default_factory=dict)


def run_key(url: str) -> str:
    """A run directory's identity for joining the cluster's view with storage's: its URL without a query (an S3
    endpoint may be spelled in the URL or in the environment)."""
    return url.split("?", 1)[0].rstrip("/")


def url_name(url: str) -> str:
    """The last path element of a directory URL: ``s3://b/sweeps/wide?q`` -> ``wide``."""
    return run_key(url).rsplit("/", 1)[-1]


def find_layout(objects: list[ObjectInfo]) -> Layout:
    """Run directories (holding ``config.yaml``) and sweep directories (holding ``sweep.json``) in a listing; the
    runs under a sweep's ``trials/`` belong to the sweep and are not listed as runs."""
    sizes = {info.name: info.size for info in objects}
    sweeps = sorted(_parent(name) for name in sizes if _base(name) == SWEEP_FILE)
    sweep_of_trials = {_join(sweep, TRIALS_DIR): sweep for sweep in sweeps}
    layout = Layout(runs=[], sweeps=sweeps, sizes=sizes, trials={sweep: [] for sweep in sweeps})
    for name in sorted(sizes):
        parent = _parent(name)
        if _base(name).startswith(TUNE_STATE_PREFIX) and parent in layout.trials:
            layout.tune_state[parent] = name  # sorted names: the newest timestamp comes last
        elif _base(name) != CONFIG_FILE or _inside_checkpoint(parent):
            continue
        elif _parent(parent) in sweep_of_trials:
            layout.trials[sweep_of_trials[_parent(parent)]].append(parent)
        else:
            layout.runs.append(parent)
    return layout


def _base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _inside_checkpoint(directory: str) -> bool:
    return any(part.startswith("checkpoint_") for part in directory.split("/"))


class StorageScanner:
    """Reads the runs and sweeps under one storage root, keeping parsed files until their size changes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.storage: Storage = open_storage(root)
        self._cache: dict[str, tuple[int, Any]] = {}

    def layout(self) -> Layout:
        """One listing of the root. Raises :class:`StorageError` (one line) when it cannot be listed."""
        return find_layout(self.storage.list())

    def url(self, relative: str) -> str:
        return child_url(self.root, relative) if relative else self.root

    def read_json(self, relative: str, sizes: dict[str, int]) -> Any:
        """A JSON file by its path under the root, parsed; None when absent or unreadable (being written)."""
        return self._read(relative, sizes, json.loads)

    def _read(self, relative: str, sizes: dict[str, int], parse: Any, fresh: bool = False) -> Any:
        """``fresh``: read even when the size is unchanged (a rewrite of the same length, as progress.json has)."""
        size = sizes.get(relative)
        if size is None:
            return None
        cached = self._cache.get(relative)
        if cached is not None and cached[0] == size and not fresh:
            return cached[1]
        try:
            value = parse(self.storage.read_bytes(relative))
        except (StorageError, OSError, ValueError, yaml.YAMLError):
            return cached[1] if cached else None  # mid-write or gone since the listing: keep what we had
        self._cache[relative] = (size, value)
        return value

    def read_run(self, directory: str, sizes: dict[str, int]) -> RunFiles | None:
        """The run at ``directory`` (relative to the root); None when its config is not a training config.
        :class:`Unreadable` (one line naming the file and field) when a file does not have its shape."""
        document = self._read(_join(directory, CONFIG_FILE), sizes, yaml.safe_load)
        try:
            config = read_config_document(document)
        except ValueError as error:  # a training configuration without its shape: its own checks say why
            raise Unreadable(f"{self.url(_join(directory, CONFIG_FILE))}: {error}") from None
        if config is None:
            return None
        epochs = config.options.epochs
        assert epochs is not None, "read_config_document refuses a configuration without epochs"
        every = self._read(_join(directory, METRICS_FILE), sizes, parse_records) or []
        _check_records(self.url(_join(directory, METRICS_FILE)), every)
        records = [record for record in every if isinstance(record, EpochRecord)]
        others = [record for record in every if not isinstance(record, EpochRecord | AttemptRecord)]
        finished = bool(records) and (records[-1].epoch >= epochs or records[-1].stopped is not None)
        progress = self._read(_join(directory, PROGRESS_FILE), sizes, parse_progress, fresh=not finished)
        _check_records(self.url(_join(directory, PROGRESS_FILE)), [progress] if progress else [])
        times = [record.time for record in [*records, *others]] + [progress.time if progress else None]
        updated = max((stamp for stamp in times if isinstance(stamp, int | float)), default=None)
        preemptions = sum(isinstance(record, PreemptionRecord) for record in every)
        return RunFiles(self.url(directory), config, epochs, records, progress, updated, preemptions)


def _check_records(url: str, records: list[Any]) -> None:
    problem = next(filter(None, map(record_problem, records)), None)
    if problem:
        raise Unreadable(f"{url}: {problem}")


def run_row(files: RunFiles, name: str, now: float | None = None) -> RunRow:
    """A run's row from its files alone: status from whether its epochs are done and its files still change."""
    now = time.time() if now is None else now
    config, records, epochs = files.config, files.records, files.epochs
    done = records[-1].epoch if records else 0
    stopped = records[-1].stopped if records else None
    if done >= epochs or stopped:
        status = "FINISHED"
    elif files.updated is not None and now - files.updated < STALE_SECONDS:
        status = "ACTIVE"
    else:
        status = "STOPPED"
    model = _model_name(config.options)
    row = RunRow(name=name, run_dir=files.url, status=status, status_source="storage", model=model)
    row.stopped = stopped
    row.epoch, row.epochs, row.updated = done, epochs, files.updated
    row.loss_history = [float(record.loss) for record in records]
    row.preemptions = files.preemptions
    row.world_sizes = [record.world_size for record in records if record.world_size]
    row.error_history = [float(record.test_error) for record in records if record.test_error is not None]
    if records:
        last = records[-1]
        row.loss, row.test_error = last.loss, last.test_error
        row.multi_label = last.test_auroc is not None
        row.best_test_error = last.best_test_error
        if row.best_test_error is None:
            row.best_test_error = min(row.error_history, default=None)
        if row.error_history:
            best = min(row.error_history)
            row.best_epoch = next((record.epoch for record in records if record.test_error == best), None)  # NaN
        row.images_per_s = last.steady_images_per_s or last.images_per_s
    fraction = float(done)
    current = files.progress if files.progress and files.progress.epoch == done + 1 and done < epochs else None
    if current:
        fraction += min(float(current.batch) / max(float(current.batches), 1.0), 1.0)
        row.loss = current.loss
        row.images_per_s = current.images_per_s if current.images_per_s is not None else row.images_per_s
    row.progress = 1.0 if status == "FINISHED" else min(fraction / max(epochs, 1), 1.0)
    row.eta_s = _eta(records, current, epochs, fraction) if status != "FINISHED" else 0.0
    return row


def _eta(records: list[EpochRecord], current: ProgressRecord | None, epochs: int, done: float) -> float | None:
    """Seconds left: :func:`epoch_wall_seconds` per remaining epoch (the driver's epoch line says the same); the
    current epoch's own ETA while it runs."""
    per_epoch = epoch_wall_seconds(records[-1], records[-2] if len(records) >= 2 else None) if records else None
    if not per_epoch and current and current.batch > 0 and current.eta_seconds is not None:
        part = float(current.batch) / max(float(current.batches), 1.0)
        per_epoch = float(current.eta_seconds) / max(1.0 - part, 1e-9)
    if not per_epoch:
        return None
    if current and current.eta_seconds is not None:
        return float(current.eta_seconds) + max(epochs - int(done) - 1, 0) * per_epoch
    return max(epochs - done, 0.0) * per_epoch


def _model_name(options: TrainConfig) -> str:
    from densenet_ray.tune.sweeps import describe

    try:
        return describe(options)
    except (KeyError, ValueError, TypeError):
        return str(options.model)
