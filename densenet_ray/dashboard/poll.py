"""One poll of every source, joined into a :class:`~densenet_ray.dashboard.snapshot.Snapshot`.

The cluster (Ray's dashboard API) says what is running: jobs, nodes, and Train V2 runs with their attempts and
workers. Storage says how far and how well: each run's ``metrics.jsonl`` and ``progress.json``, each sweep's trials.
Runs are joined on their run directory, which a Train V2 run carries in its ``train_loop_config`` (our config's
``storage`` and ``name``); the storage roots of the cluster's runs are scanned too, so sweeps and runs are found
without ``--storage``.
"""

from __future__ import annotations

import time
from typing import Any

from densenet_ray.dashboard.client import ClusterError, DashboardClient
from densenet_ray.dashboard.runs import TRIALS_DIR, Layout, StorageScanner, run_key, run_row, url_name
from densenet_ray.dashboard.snapshot import (
    ACTIVE_STATUSES,
    ClusterInfo,
    JobRow,
    RunRow,
    Snapshot,
    SweepRow,
    cluster_info,
    job_rows,
)
from densenet_ray.dashboard.stored import Unreadable
from densenet_ray.dashboard.sweep_state import merge_run, read_sweep
from densenet_ray.data.storage import StorageError, child_url, split_url
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.run.directory import read_config_document

ALIVE = "ALIVE"


def loop_options(run: dict[str, Any]) -> TrainConfig | None:
    """The options a Train V2 run was started with (its ``train_loop_config``, read as a saved run's configuration
    is); None when it is not one of ours or does not have its shape."""
    try:
        config = read_config_document((run.get("run_settings") or {}).get("train_loop_config"))
    except ValueError:
        return None
    return config.options if config else None


def train_run_dir(run: dict[str, Any]) -> str | None:
    """The run directory of a Train V2 run: our config's storage root and name, else Ray's own storage path (a
    local one; an S3 path is bucket-relative there)."""
    run_config = (run.get("run_settings") or {}).get("run_config") or {}
    options = loop_options(run)
    name = (options.name if options else None) or run.get("name")
    storage = options.storage if options else None
    if storage and "://" in storage and name:
        return child_url(storage, name)
    path = run_config.get("storage_path")
    if isinstance(path, str) and path.startswith("/") and not run_config.get("storage_filesystem") and name:
        return child_url(path, name)
    return None


def train_run_row(run: dict[str, Any], jobs_by_id: dict[str, JobRow]) -> RunRow:
    """A run's row as the cluster sees it: status, attempts, workers of the latest attempt, the job that started it."""
    attempts = run.get("attempts") or []
    workers = (attempts[-1].get("workers") or []) if attempts else []
    job = jobs_by_id.get(str(run.get("job_id")))
    options = loop_options(run)
    row = RunRow(
        name=str(run.get("name") or run.get("id")),
        run_dir=train_run_dir(run),
        status=str(run.get("status", "UNKNOWN")),
        status_source="train",
        model=options.model if options else None,
        epochs=options.epochs if options else None,
        attempts=len(attempts),
        restarts=max(len(attempts) - 1, 0),
        workers_alive=sum(1 for worker in workers if worker.get("status") == ALIVE),
        workers=len(workers),
        job=(job.submission_id if job else run.get("job_id")),
        status_detail=run.get("status_detail"),
    )
    if row.status == "FINISHED":
        row.progress = 1.0
    return row


class Poller:
    """Reads the cluster (when there is one) and the storage roots; :meth:`poll` returns a fresh snapshot."""

    def __init__(
        self, address: str | None, storage: list[str], note: str | None = None, send_token: bool = False
    ) -> None:
        self.client = DashboardClient(address, send_token=send_token) if address else None
        self.storage = list(storage)
        self.scanners: dict[str, StorageScanner] = {}
        self.note = note  # why there is no cluster, shown with every snapshot

    def read_cluster(self, notes: list[str]) -> tuple[ClusterInfo, list[dict[str, Any]], list[dict[str, Any]]]:
        """Cluster figures, the raw jobs and the raw Train runs. An unreachable or unauthorised dashboard raises
        :class:`ClusterError`; an endpoint that fails after that (a busy head can be slow to answer) becomes a note
        and its part of the snapshot stays empty."""
        assert self.client is not None
        version = self.client.version()
        nodes = self._part(self.client.nodes, notes) or []
        info = cluster_info(self.client.address, version, nodes, self.client.cluster_status())
        jobs = self._part(self.client.jobs, notes) or []
        try:
            runs = self.client.train_runs()
        except ClusterError as error:
            notes.append(str(error))
            return info, jobs, []
        info.train_state = runs is not None
        if runs is None:
            notes.append(
                "Ray Train run state is off on this cluster: start it with RAY_TRAIN_ENABLE_STATE_TRACKING=1 "
                "(runs and sweeps are still read from storage)"
            )
        return info, jobs, runs or []

    @staticmethod
    def _part(read: Any, notes: list[str]) -> Any:
        try:
            return read()
        except ClusterError as error:
            notes.append(str(error))
            return None

    def poll(self, strict: bool = False) -> Snapshot:
        """Everything, now. With ``strict``, a cluster that cannot be read raises; otherwise it becomes a note and
        the snapshot shows storage alone."""
        now = time.time()
        notes = [self.note] if self.note else []
        cluster: ClusterInfo | None = None
        raw_jobs: list[dict[str, Any]] = []
        raw_runs: list[dict[str, Any]] = []
        if self.client is not None:
            try:
                cluster, raw_jobs, raw_runs = self.read_cluster(notes)
            except ClusterError as error:
                if strict:
                    raise
                notes.append(str(error))
        jobs = job_rows(raw_jobs, now)
        by_job_id = {row.job_id: row for row in jobs if row.job_id}
        cluster_runs = [train_run_row(run, by_job_id) for run in raw_runs]
        roots = self.roots(cluster_runs)
        runs, sweeps = self._from_storage(roots, cluster_runs, notes, now, strict)
        return Snapshot(time=now, cluster=cluster, jobs=jobs, runs=runs, sweeps=sweeps, storage=roots, notes=notes)

    def roots(self, cluster_runs: list[RunRow]) -> list[str]:
        """The storage roots to scan: the user's, then the roots of the cluster's runs (a sweep trial's root is its
        sweep's directory)."""
        roots = list(self.storage)
        for run in cluster_runs:
            if not run.run_dir:
                continue
            root, _ = split_url(run.run_dir)
            parent, last = split_url(root)
            if last == TRIALS_DIR:
                root = parent
            if root not in roots and not any(_under(root, mine) for mine in self.storage):
                roots.append(root)
        return roots

    def _scanner(self, root: str) -> StorageScanner:
        if root not in self.scanners:
            self.scanners[root] = StorageScanner(root)
        return self.scanners[root]

    def _from_storage(
        self, roots: list[str], cluster_runs: list[RunRow], notes: list[str], now: float, strict: bool = False
    ) -> tuple[list[RunRow], list[SweepRow]]:
        """Runs and sweeps under every root, joined with the cluster's runs (keyed by run directory)."""
        by_dir = {run_key(run.run_dir): run for run in cluster_runs if run.run_dir}
        runs: dict[str, RunRow] = {}
        sweeps: dict[str, SweepRow] = {}
        for root in roots:
            try:
                scanner = self._scanner(root)
                layout = scanner.layout()
            except (StorageError, OSError) as error:
                if strict and root in self.storage:
                    raise StorageError(f"--storage {root}: {' '.join(str(error).split())}") from None
                notes.append(f"cannot read storage {root}: {' '.join(str(error).split())}")
                continue
            self._scan(scanner, layout, by_dir, (runs, sweeps, notes), now)
        for run in cluster_runs:  # runs whose directory this machine cannot read: the cluster's view alone
            runs.setdefault(run_key(run.run_dir) if run.run_dir else run.name, run)
        if self.storage and not runs and not sweeps and self.client is None:
            notes.append(f"no training runs or sweeps under {', '.join(self.storage)}")
        ordered = sorted(runs.values(), key=lambda row: (row.status not in ACTIVE_STATUSES, -(row.updated or now)))
        return ordered, sorted(sweeps.values(), key=lambda sweep: (sweep.status != "RUNNING", sweep.name))

    @staticmethod
    def _scan(
        scanner: StorageScanner,
        layout: Layout,
        by_dir: dict[str, RunRow],
        found_so_far: tuple[dict[str, RunRow], dict[str, SweepRow], list[str]],
        now: float,
    ) -> None:
        """Add one root's sweeps (their trials' runs too, marked with the sweep) and standalone runs to the runs and
        sweeps found so far; a run or sweep whose files do not have their shape is a note naming the file."""
        runs, sweeps, notes = found_so_far
        for directory in layout.sweeps:
            try:
                found = read_sweep(scanner, directory, layout, by_dir, now)
            except Unreadable as error:
                notes.append(f"unreadable sweep {error}")
                continue
            if found is None or run_key(found[0].url) in sweeps:
                continue
            sweeps[run_key(found[0].url)] = found[0]
            for run in found[1]:
                runs.setdefault(run_key(run.run_dir) if run.run_dir else run.name, run)
        for directory in layout.runs:
            try:
                files = scanner.read_run(directory, layout.sizes)
            except Unreadable as error:
                notes.append(f"unreadable run {error}")
                continue
            if files is None or run_key(files.url) in runs:
                continue
            key = run_key(files.url)
            row = run_row(files, url_name(files.url), now)
            runs[key] = merge_run(row, by_dir[key]) if key in by_dir else row


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
