"""A run directory's ``bad-steps.jsonl``: a :class:`BadStepRecord` per optimizer step skipped as not finite, per
rollback and per end it caused (``train/worker_rollback.py``). Rank 0 alone writes it, while the driver appends to
``metrics.jsonl``: the two files never have two writers."""

from __future__ import annotations

import dataclasses
import json
import time

from densenet_ray.data.storage import Storage
from densenet_ray.train.run.record_shapes import BadStepRecord

BAD_STEPS_FILE = "bad-steps.jsonl"


def append_bad_step(storage: Storage, record: BadStepRecord) -> None:
    """Add ``record`` to the run's ``bad-steps.jsonl`` (rewritten whole, atomically: the file is small)."""
    existing = storage.read_bytes(BAD_STEPS_FILE) if storage.exists(BAD_STEPS_FILE) else b""
    values = {**dataclasses.asdict(record), "time": record.time or time.time()}
    storage.write_bytes(BAD_STEPS_FILE, existing + (json.dumps(values) + "\n").encode())


def read_bad_steps(storage: Storage) -> list[BadStepRecord]:
    """Every record of the run's ``bad-steps.jsonl``, in the order written (torn or foreign lines skipped)."""
    if not storage.exists(BAD_STEPS_FILE):
        return []
    names = {field.name for field in dataclasses.fields(BadStepRecord)}
    found = []
    for line in storage.read_bytes(BAD_STEPS_FILE).decode(errors="replace").splitlines():
        try:
            found.append(BadStepRecord(**{k: v for k, v in json.loads(line).items() if k in names}))
        except (ValueError, TypeError, AttributeError):
            continue
    return found
