"""What keeps a run directory consistent: its identity (a resume may not change what the run computes) and its
lease (one live driver per run directory at a time), both on local disk and on S3.

The lease is a small JSON file naming its owner and an expiry a minute ahead, renewed by a thread in the driver.
It is taken and renewed with the storage's compare-and-swap write (``flock`` locally, S3 conditional writes), so two
drivers starting the same run at once cannot both win; a driver that died stops renewing and its lease lapses, so
a crash never blocks a resume for longer than the expiry (on the same machine, not at all: a holder whose process is
gone has lapsed).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from densenet_ray.errors import UserError
from densenet_ray.train.config.options import training_options
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.run.directory import LEASE_FILE, RunDirectory

LEASE_SECONDS = 60.0


class RunInUse(UserError):
    """Another live driver holds the run directory."""


def run_identity(config: ResolvedConfig, train_data: str) -> dict[str, Any]:
    """What defines the run's computation, by option name: every option declared ``resume="fixed"`` (the model and
    its starting weights, the dataset, batch size, schedule, seed, numerics, the recipe) and the training shards
    (``train_data``: the manifest's fingerprint). The world size and loader workers are not: a run resumes exactly
    on another layout (``data/reading/epoch_plan.py``)."""
    fixed = [declared.name for declared in training_options() if declared.declaration.resume == "fixed"]
    return {**{name: getattr(config.options, name) for name in fixed}, "train_data": train_data}


def check_identity(saved: dict[str, Any] | None, current: dict[str, Any], name: str) -> None:
    """Refuse, in one line, a resume of run ``name`` whose options change what it computes."""
    if saved is None:
        return
    differing = [key for key in current if key in saved and saved[key] != current[key]]
    if not differing:
        return
    shown = ", ".join(
        "its training shards"
        if key == "train_data"
        else f"--{key.replace('_', '-')} {saved[key]!r} (now {current[key]!r})"
        for key in differing[:4]
    )
    raise UserError(
        f"run {name!r} exists with other options that change what it computes: {shown}; resume it with its own "
        f"options, or start a new run with another --name"
    )


@dataclass(frozen=True)
class _LeaseRecord:
    owner: str
    host: str
    pid: int
    expires: float


def _alive(holder: _LeaseRecord) -> bool:
    """A holder is alive until its lease expires; on this machine, only while its process exists too (a driver
    killed with its Ray actor, as Tune does to a trial when a sweep is interrupted, never releases its lease)."""
    if holder.expires <= time.time():
        return False
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class Lease:
    """This driver's hold on a run directory: :meth:`acquire`, keep it with :meth:`start_renewing`, :meth:`release`."""

    def __init__(self, run: RunDirectory, seconds: float = LEASE_SECONDS) -> None:
        self.run, self.seconds = run, seconds
        self.owner = uuid.uuid4().hex
        self._version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        record = _LeaseRecord(self.owner, socket.gethostname(), os.getpid(), time.time() + self.seconds)
        return json.dumps(asdict(record)).encode()

    def acquire(self) -> None:
        """Take the lease, or raise :class:`RunInUse` naming the live holder."""
        current = self.run.storage.read_versioned(LEASE_FILE)
        if current is not None:
            try:
                holder = _LeaseRecord(**json.loads(current[0]))
            except (ValueError, TypeError):
                holder = None  # unreadable: treat as lapsed
            if holder and holder.owner != self.owner and _alive(holder):
                raise RunInUse(
                    f"run {self.run.url} is in use by pid {holder.pid} on {holder.host} (its lease runs until "
                    f"{time.strftime('%H:%M:%S', time.localtime(holder.expires))}); wait for it to end, or use "
                    "another --name"
                )
        if not self._write(current[1] if current else None):
            raise RunInUse(f"run {self.run.url} was just taken by another driver; use another --name")

    def _write(self, version: str | None) -> bool:
        data = self._record()
        if not self.run.storage.write_if(LEASE_FILE, data, version):
            return False
        written = self.run.storage.read_versioned(LEASE_FILE)
        self._version = written[1] if written and written[0] == data else None
        return self._version is not None

    def start_renewing(self) -> None:
        """Renew the lease every third of its length in a daemon thread, until :meth:`release`."""
        self._thread = threading.Thread(target=self._renew, name="run-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self._write(self._version):
                    return  # taken over after we lapsed (a long stall): the new owner's lease stands
            except OSError:
                continue  # a storage hiccup: try again next time, the lease has time left

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self.run.storage.read_versioned(LEASE_FILE)
        if current is not None and current[1] == self._version:
            self.run.storage.delete(LEASE_FILE)
