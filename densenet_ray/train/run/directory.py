"""The run directory ``<storage>/<name>``: its layout, its records, their one writer and one reader.

Files (local or ``s3://``), each written atomically:

- ``config.yaml``: the resolved configuration (:meth:`ResolvedConfig.to_document`); older runs hold flat options.
  :func:`read_config_document` reads every form back as a :class:`ResolvedConfig`, :meth:`RunDirectory.read` a whole
  run as a :class:`SavedRun`.
- ``run.json``: the run's identity, what defines its computation; a resume with other values is refused.
- ``lease.json``: which driver owns the run now, until when (see :class:`Lease`).
- ``metrics.jsonl``: one :class:`EpochRecord` per epoch, one :class:`MidEpochRecord` per mid-epoch checkpoint and
  one :class:`AttemptRecord` per start of the worker group (the first and every restart, with its world size) and
  a :class:`ProfileRecord` for ``--profile-steps``, a :class:`PreemptionRecord` per preemption notice.
- ``progress.json``: rank 0's :class:`ProgressRecord`, rewritten every few seconds during an epoch.
- ``bad-steps.jsonl``: rank 0's records of non-finite steps, rollbacks and ends (``train/run/bad_steps.py``).
- ``error.txt``: the full worker traceback of the last failed attempt.
- ``tensorboard/``: rank 0's TensorBoard event files (``train/progress/tracking.py``); ``tensorboard/profile/``
  every rank's ``--profile-steps`` trace (``train/profiling.py``).
- ``compile-cache.bin``: rank 0's compiled graphs (``torch.compiler.save_cache_artifacts``), loaded by every worker
  of later attempts, on any machine, before they compile (see ``train/checkpoint/compile_cache.py``).
- ``checkpoint_*/`` and ``checkpoint_manager_snapshot.json``: Ray Train's checkpoints and which it committed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import yaml

from densenet_ray.data.storage import LocalStorage, Storage, StorageError, child_url, open_storage
from densenet_ray.errors import UserError
from densenet_ray.printing import PrintLine
from densenet_ray.train.config.choices import NUM_CLASSES
from densenet_ray.train.config.declaration import GROUPS
from densenet_ray.train.config.options import training_options
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.run.record_shapes import (
    AttemptRecord,
    EpochRecord,
    MidEpochRecord,
    PreemptionRecord,
    ProfileRecord,
    ProgressRecord,
)

CONFIG_FILE = "config.yaml"
IDENTITY_FILE = "run.json"
LEASE_FILE = "lease.json"
METRICS_FILE = "metrics.jsonl"
PROGRESS_FILE = "progress.json"
ERROR_FILE = "error.txt"
COMPILE_ARTIFACTS_FILE = "compile-cache.bin"
TENSORBOARD_DIR = "tensorboard"
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's record of its committed checkpoints
CHECKPOINT_PREFIX = "checkpoint_"
RUN_FORMAT = "densenet-ray-run/1"


def _from_dict(kind: type, values: dict[str, Any]) -> Any:
    """A record from a parsed line: unknown keys (from a newer version) are ignored."""
    names = {field.name for field in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in values.items() if key in names})


Record = EpochRecord | MidEpochRecord | AttemptRecord | ProfileRecord | PreemptionRecord
_MARKERS: tuple[tuple[str, type], ...] = (
    ("attempt", AttemptRecord),
    ("mid_epoch", MidEpochRecord),
    ("profile", ProfileRecord),
    ("preempted", PreemptionRecord),
)


def record_from_metrics(values: dict[str, Any]) -> Record:
    """The record a reported metrics dict (or a parsed line) holds: its marker field says which, else an epoch's."""
    kind = next((kind for marker, kind in _MARKERS if values.get(marker)), EpochRecord)
    return _from_dict(kind, values)


def metrics_line(record: Record) -> bytes:
    """A record as its ``metrics.jsonl`` line, stamped with the time it is written."""
    values = dataclasses.asdict(record)
    values["time"] = values.get("time") or time.time()
    return (json.dumps(values, default=float) + "\n").encode()


def parse_records(data: bytes) -> list[Record]:
    """Every record of a ``metrics.jsonl``; torn or foreign lines are skipped (a store without atomic appends)."""
    records: list[Record] = []
    for line in data.decode(errors="replace").splitlines():
        try:
            records.append(record_from_metrics(json.loads(line)))
        except (ValueError, TypeError, AttributeError):
            continue
    return records


def parse_metrics(data: bytes) -> tuple[list[EpochRecord], list[MidEpochRecord]]:
    """The epoch and mid-epoch records of a ``metrics.jsonl``."""
    records = parse_records(data)
    return [r for r in records if isinstance(r, EpochRecord)], [r for r in records if isinstance(r, MidEpochRecord)]


def parse_progress(data: bytes) -> ProgressRecord | None:
    try:
        return _from_dict(ProgressRecord, json.loads(data))
    except (ValueError, TypeError, AttributeError):
        return None


def read_config_document(document: Any) -> ResolvedConfig | None:
    """A saved configuration (``config.yaml``, a checkpoint's ``config``, a Train run's ``train_loop_config``) as the
    resolved configuration, whichever version wrote it: today's groups, older groups (upgraded by
    :meth:`ResolvedConfig.from_document`) or the flat options runs were saved with before there were groups. The one
    reader of saved options: everything after it reads them typed. None when ``document`` is not a training
    configuration; a one-line :class:`UserError` when it is one without its shape."""
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("model"), dict) and isinstance(document.get("optim"), dict):
        config = ResolvedConfig.from_document(document)
    elif "model" in document and "epochs" in document:
        config = ResolvedConfig.from_document(_grouped(document))
    else:
        return None
    if config.options.model is None or config.options.epochs is None:
        raise UserError("not a densenet-ray run configuration (its model or epochs are not set)")
    if not config.num_classes and config.options.dataset in NUM_CLASSES:  # flat options did not save it
        config = dataclasses.replace(config, num_classes=NUM_CLASSES[config.options.dataset])
    return config


def _grouped(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat options (a ``config.yaml`` written before it had groups) in today's groups, each under its key there;
    ``None`` was a default not filled in. ``amp`` is the flag ``--precision`` replaced, upgraded with the groups."""
    places = {declared.name: (declared.group, declared.key) for declared in training_options()}
    places.update({item.name: (item.metadata["group"], item.name) for item in dataclasses.fields(ResolvedConfig)[1:]})
    places["amp"] = ("execution", "amp")
    document: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for name, value in flat.items():
        if name not in places:
            raise UserError(f"not a densenet-ray run configuration (unknown option {name!r})")
        group, key = places[name]
        if value is not None:
            document[group][key] = value
    return document


@dataclass(frozen=True)
class SavedRun:
    """A run directory read back (:meth:`RunDirectory.read`): its resolved configuration and typed records."""

    url: str
    config: ResolvedConfig
    records: list[Record]
    progress: ProgressRecord | None

    @property
    def epochs(self) -> list[EpochRecord]:
        """The records of the epochs it finished, in order."""
        return [record for record in self.records if isinstance(record, EpochRecord)]


class RunDirectory:
    """One run directory: reads and writes its files (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.storage: Storage = open_storage(url)

    @classmethod
    def at(cls, root: str, name: str) -> RunDirectory:
        return cls(child_url(root, name))

    # -- configuration and identity ----------------------------------------------------------------------------
    def write_config(self, document: dict[str, Any]) -> None:
        self.storage.write_bytes(CONFIG_FILE, yaml.safe_dump(document, sort_keys=False).encode())

    def read_config(self) -> ResolvedConfig | None:
        """The saved configuration (:func:`read_config_document`), or None when there is none."""
        if not self.storage.exists(CONFIG_FILE):
            return None
        return read_config_document(yaml.safe_load(self.storage.read_bytes(CONFIG_FILE)))

    def read(self) -> SavedRun | None:
        """The run as it is saved: its configuration and records (:class:`SavedRun`); None before its
        configuration is written. A one-line :class:`UserError` when the configuration does not have its shape."""
        config = self.read_config()
        return None if config is None else SavedRun(self.url, config, self.records(), self.progress())

    def read_identity(self) -> dict[str, Any] | None:
        if not self.storage.exists(IDENTITY_FILE):
            return None
        return json.loads(self.storage.read_bytes(IDENTITY_FILE)).get("identity")

    def write_identity(self, identity: dict[str, Any]) -> None:
        document = {"format": RUN_FORMAT, "created": time.time(), "identity": identity}
        self.storage.write_bytes(IDENTITY_FILE, json.dumps(document, indent=2).encode())

    # -- records -----------------------------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        """Add a record to ``metrics.jsonl`` (rewritten whole, atomically: the file is small)."""
        existing = self.storage.read_bytes(METRICS_FILE) if self.storage.exists(METRICS_FILE) else b""
        self.storage.write_bytes(METRICS_FILE, existing + metrics_line(record))

    def metrics(self) -> tuple[list[EpochRecord], list[MidEpochRecord]]:
        if not self.storage.exists(METRICS_FILE):
            return [], []
        return parse_metrics(self.storage.read_bytes(METRICS_FILE))

    def records(self) -> list[Record]:
        """Every record of ``metrics.jsonl``, in the order written."""
        return parse_records(self.storage.read_bytes(METRICS_FILE)) if self.storage.exists(METRICS_FILE) else []

    def attempts(self) -> list[AttemptRecord]:
        """Every start of the run's worker group, in order."""
        return [record for record in self.records() if isinstance(record, AttemptRecord)]

    def write_progress(self, record: ProgressRecord) -> None:
        self.storage.write_bytes(PROGRESS_FILE, json.dumps(dataclasses.asdict(record)).encode())

    def progress(self) -> ProgressRecord | None:
        return parse_progress(self.storage.read_bytes(PROGRESS_FILE)) if self.storage.exists(PROGRESS_FILE) else None

    def write_error(self, text: str) -> str:
        """Save a failed attempt's full traceback; returns where it is."""
        self.storage.write_bytes(ERROR_FILE, text.encode())
        return self.storage.join(ERROR_FILE)

    def write_compile_artifacts(self, data: bytes) -> None:
        self.storage.write_bytes(COMPILE_ARTIFACTS_FILE, data)

    def read_compile_artifacts(self) -> bytes | None:
        if not self.storage.exists(COMPILE_ARTIFACTS_FILE):
            return None
        return self.storage.read_bytes(COMPILE_ARTIFACTS_FILE)

    # -- checkpoints -------------------------------------------------------------------------------------------
    def committed_checkpoints(self) -> list[str]:
        """The checkpoint directories Ray Train committed, newest first (by its own ordering of report indexes)."""
        if not self.storage.exists(SNAPSHOT_FILE):
            return []
        snapshot = json.loads(self.storage.read_bytes(SNAPSHOT_FILE))
        names = [result.get("checkpoint_dir_name", "") for result in snapshot.get("checkpoint_results", [])]
        latest = (snapshot.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name", "")
        return sorted({name for name in [*names, latest] if name}, reverse=True)

    def checkpoint_metrics(self) -> dict[str, dict[str, Any]]:
        """Each committed checkpoint's reported metrics (its epoch or mid-epoch record), by directory name."""
        if not self.storage.exists(SNAPSHOT_FILE):
            return {}
        snapshot = json.loads(self.storage.read_bytes(SNAPSHOT_FILE))
        results = [*snapshot.get("checkpoint_results", []), snapshot.get("latest_checkpoint_result") or {}]
        return {r["checkpoint_dir_name"]: r.get("metrics") or {} for r in results if r.get("checkpoint_dir_name")}

    def remove_orphan_checkpoints(self) -> list[str]:
        """Delete checkpoint directories Ray uploaded but never committed (a crash between the upload and the
        controller's poll leaves them; ray-project/ray#41700); returns their names. Resuming only ever uses
        committed checkpoints."""
        committed = set(self.committed_checkpoints())
        if not committed:
            return []
        objects = [info.name for info in self.storage.list(CHECKPOINT_PREFIX)]
        orphans = sorted({name.split("/", 1)[0] for name in objects if "/" in name} - committed)
        for orphan in orphans:
            if isinstance(self.storage, LocalStorage):
                shutil.rmtree(os.path.join(self.storage.root, orphan), ignore_errors=True)
            else:
                for name in objects:
                    if name.startswith(orphan + "/"):
                        self.storage.delete(name)
        return orphans

    def checkpoint_url(self, name: str) -> str:
        return child_url(self.url, name)


def clean_up(run: RunDirectory, print_line: PrintLine) -> None:
    """Housekeeping after a run: orphan checkpoints go. A problem here is one warning line, never a failure."""
    try:
        removed = run.remove_orphan_checkpoints()
    except (StorageError, OSError, ValueError) as error:
        print_line(f"warning: could not clean up {run.url} ({type(error).__name__}: {error}); the run is unaffected")
        return
    if removed:
        print_line(f"removed {len(removed)} checkpoint(s) Ray never committed: {', '.join(removed)}")
