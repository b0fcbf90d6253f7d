"""A sweep's state from its experiment directory: ``sweep.json`` (what was asked for), Tune's own
``experiment_state-*.json`` (every trial's status, pending ones included), the trials' run directories under
``trials/`` and, once finished, ``results.json``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from densenet_ray.dashboard.runs import (
    STALE_SECONDS,
    SWEEP_FILE,
    Layout,
    RunFiles,
    StorageScanner,
    _join,
    run_key,
    run_row,
    url_name,
)
from densenet_ray.dashboard.snapshot import RunRow, SweepRow, TrialRow
from densenet_ray.dashboard.stored import Unreadable, check_fields
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.tune.report import RESULTS_JSON

# Tune's trial statuses shown as they are; TERMINATED splits into FINISHED and STOPPED (by epochs done).
TUNE_STATUSES = {"PENDING", "RUNNING", "PAUSED", "ERROR"}
RESULT_STATUS = {"complete": "FINISHED", "stopped": "STOPPED", "error": "ERROR", "interrupted": "INTERRUPTED"}
STATUS_ORDER = ("RUNNING", "PENDING", "PAUSED", "FINISHED", "STOPPED", "INTERRUPTED", "ERROR")


def tune_trial_states(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{trial_id: {"status", "trial"}}`` from Tune's experiment state (its trial entries are JSON strings)."""
    states = {}
    for entry in document.get("trial_data") or []:
        try:
            trial = json.loads(entry[0] if isinstance(entry, list) else entry)
        except (TypeError, ValueError, IndexError):
            continue
        if isinstance(trial, dict) and trial.get("trial_id"):
            config = trial.get("config")
            config = config if isinstance(config, dict) else {}
            options = config.get("trial")
            options = options if isinstance(options, dict) else {}
            status = trial.get("status") if isinstance(trial.get("status"), str) else None
            states[str(trial["trial_id"])] = {"status": status, "trial": options}
    return states


def read_sweep(
    scanner: StorageScanner,
    directory: str,
    layout: Layout,
    train_runs: dict[str, RunRow],
    now: float | None = None,
) -> tuple[SweepRow, list[RunRow]] | None:
    """The sweep at ``directory`` and its trials' run rows; ``train_runs`` (keyed by :func:`run_key`) are the
    cluster's view of runs, which wins over the files' for status. None when ``sweep.json`` cannot be read;
    :class:`Unreadable` (naming the file) when a file of the sweep or of a trial's run does not have its shape."""
    now = time.time() if now is None else now
    description = scanner.read_json(_join(directory, SWEEP_FILE), layout.sizes)
    if not isinstance(description, dict):
        return None
    where = scanner.url(_join(directory, SWEEP_FILE))
    check_fields(where, description, {"options": "dict", "searched": "list", "kind": "str", "scheduler": "str"})
    if not all(isinstance(option, str) for option in description.get("searched") or []):
        raise Unreadable(f"{where}: searched is not a list of option names")
    saved = _saved_rows(scanner, _join(directory, RESULTS_JSON), layout)
    state_file = layout.tune_state.get(directory)
    state = scanner.read_json(state_file, layout.sizes) if state_file else None
    if state is not None and not isinstance(state, dict):
        raise Unreadable(f"{scanner.url(state_file or '')}: not a JSON object")
    states = tune_trial_states(state or {})
    run_dirs = {run.rsplit("/", 1)[-1]: run for run in layout.trials.get(directory, [])}
    name = url_name(scanner.url(directory))
    rows, runs = [], []
    for trial_id in sorted(set(states) | {run.removeprefix("train-") for run in run_dirs}):
        relative = run_dirs.get(f"train-{trial_id}")
        files = scanner.read_run(relative, layout.sizes) if relative else None
        run = _trial_run(files, f"train-{trial_id}", train_runs, now)
        if run is not None:
            run.sweep = name
            runs.append(run)
        trial = states.get(trial_id, {}).get("trial") or {}
        options = files.config.options if files else _trial_options(description.get("options") or {}, trial)
        status = _trial_status(states.get(trial_id, {}).get("status"), saved.get(f"train-{trial_id}"), run)
        rows.append(_trial_row(trial_id, status, options, list(description.get("searched") or []), run))
    sweep = SweepRow(
        name=name,
        url=scanner.url(directory),
        kind=str(description.get("kind", "custom")),
        scheduler=str(description.get("scheduler", "fifo")),
        status=_sweep_status(bool(saved), rows, runs, now),
        trials=sorted(rows, key=lambda row: (_status_rank(row.status), row.trial_id)),
    )
    _add_summary(sweep)
    return sweep, runs


def _saved_rows(scanner: StorageScanner, relative: str, layout: Layout) -> dict[str, dict[str, Any]]:
    """The finished sweep's rows by trial name (``results.json``); empty while it runs."""
    results = scanner.read_json(relative, layout.sizes)
    if results is None:
        return {}
    rows = results.get("rows", []) if isinstance(results, dict) else None
    named = isinstance(rows, list) and all(isinstance(row, dict) and isinstance(row.get("trial"), str) for row in rows)
    if not named or not isinstance(rows, list):  # the second test only tells the type checker what the first did
        raise Unreadable(f"{scanner.url(relative)}: rows is not a list of trials, each with its name")
    return {row["trial"]: row for row in rows}


def _trial_options(base: dict[str, Any], trial: dict[str, Any]) -> TrainConfig | None:
    """A trial's options before its run has saved them: the sweep's options with the trial's (Tune's state); None
    when they are not training options (written by another version)."""
    try:
        return TrainConfig.from_sources(base, trial, origins=("the sweep's options", "the trial"))
    except ValueError:
        return None


def _trial_row(
    trial_id: str, status: str, options: TrainConfig | None, searched: list[str], run: RunRow | None
) -> TrialRow:
    from densenet_ray.tune.sweeps import searched_values, trial_label

    label, shown = "?", dict[str, Any]()  # options that are not training options: nothing to show
    if options is not None:
        try:
            label = trial_label(options, searched)
        except (KeyError, ValueError, TypeError):  # a model this version does not know
            label = str(options.model)
        shown = searched_values(options, searched) if searched else {"model": options.model}
    return TrialRow(
        trial_id=trial_id,
        label=label,
        status=status,
        options=shown,
        epoch=run.epoch if run else 0,
        epochs=run.epochs if run else (options.epochs if options else None),
        test_error=run.test_error if run else None,
        best_test_error=run.best_test_error if run else None,
        run_dir=run.run_dir if run else None,
        multi_label=bool(run and run.multi_label),
    )


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _add_summary(sweep: SweepRow) -> None:
    """Trial counts by status, and the trial with the lowest best test error so far."""
    for row in sweep.trials:
        sweep.counts[row.status] = sweep.counts.get(row.status, 0) + 1
    measured = [row for row in sweep.trials if row.best_test_error is not None]
    if measured:
        best = min(measured, key=lambda row: (row.best_test_error or 0.0, row.trial_id))
        sweep.best_trial, sweep.best_label = best.trial_id, best.label
        sweep.best_test_error, sweep.best_options = best.best_test_error, best.options
        sweep.multi_label = best.multi_label


def _trial_run(files: RunFiles | None, name: str, train_runs: dict[str, RunRow], now: float) -> RunRow | None:
    if files is None:
        return None
    row = run_row(files, name, now)
    cluster = train_runs.get(run_key(files.url))
    return merge_run(row, cluster) if cluster else row


def merge_run(stored: RunRow, cluster: RunRow) -> RunRow:
    """The storage row with the cluster's status, attempts, workers and job."""
    stored.status, stored.status_source, stored.status_detail = cluster.status, "train", cluster.status_detail
    stored.attempts, stored.restarts = cluster.attempts, cluster.restarts
    stored.workers_alive, stored.workers, stored.job = cluster.workers_alive, cluster.workers, cluster.job
    if cluster.status == "FINISHED":
        stored.progress, stored.eta_s = 1.0, 0.0
    return stored


def _trial_status(tune_status: str | None, saved: dict[str, Any] | None, run: RunRow | None) -> str:
    """Precedence: the finished sweep's own table, the files (all epochs done), the cluster's run state, Tune's last
    saved state, then the files' activity."""
    if saved is not None:
        return RESULT_STATUS.get(str(saved.get("status")), str(saved.get("status")).upper())
    if run is not None and (run.status == "FINISHED" or (run.epochs is not None and run.epoch >= run.epochs)):
        return "FINISHED"
    if run is not None and run.status_source == "train":
        if run.status == "ERRORED":
            return "ERROR"
        if run.status != "ABORTED":
            return "RUNNING"
    if tune_status == "TERMINATED":
        return "STOPPED"  # ended by the scheduler before its last epoch
    if tune_status in TUNE_STATUSES:
        if tune_status == "RUNNING" and run is not None and run.status == "STOPPED":
            return "INTERRUPTED"  # Tune's last saved state says running, but the files stopped changing long ago
        return tune_status
    if run is None:
        return "PENDING"
    return {"ACTIVE": "RUNNING", "STOPPED": "INTERRUPTED", "ABORTED": "STOPPED"}.get(run.status, run.status)


def _sweep_status(finished: bool, trials: list[TrialRow], runs: list[RunRow], now: float) -> str:
    """FINISHED (or ERROR) once ``results.json`` exists; RUNNING while a trial runs or the trials' files changed
    lately (between trials, or writing the results); PENDING before any trial started; else INTERRUPTED (the same
    ``--name`` resumes it)."""
    if finished:
        return "ERROR" if any(row.status == "ERROR" for row in trials) else "FINISHED"
    if any(row.status == "RUNNING" for row in trials):
        return "RUNNING"
    if any(run.updated is not None and now - run.updated < STALE_SECONDS for run in runs):
        return "RUNNING"
    if not runs:
        return "PENDING"
    return "INTERRUPTED"
