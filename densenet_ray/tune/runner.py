"""Running a sweep on Ray Tune: every trial is the Train driver of one training run.

A Ray Train V2 ``TorchTrainer`` cannot be handed to a ``Tuner`` (Ray's migration guide, ray-project/ray#49454);
instead each Tune trial is a function that builds and fits one training run, whose ``TuneReportCallback``
forwards rank 0's per-epoch metrics to Tune. The
trial itself holds next to nothing (0.01 CPU, or a sliver of a ``TRAIN_DRIVER`` resource when the cluster has one)
and at most as many trials run as the cluster can give all their workers, so a small cluster never deadlocks with
trial drivers holding the CPUs their workers wait for.

Layout under ``<storage>/<name>/``: Tune's experiment state, ``sweep.json`` (what was asked), ``trials/train-<trial
id>/`` (each a complete training run directory) and, at the end, ``results.json`` and ``results.csv``. The same
``--name`` restores the experiment: finished trials are kept, unfinished ones resume from their own checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict
from typing import Any

from ray import tune
from rich.console import Console

from densenet_ray.data.storage import StorageError, child_url, open_storage
from densenet_ray.errors import Interrupted, UserError
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session
from densenet_ray.safe_load import TRUST_STORAGE, storage_trusted
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import ResolvedConfig, anchored, derive, resolve
from densenet_ray.train.run.preflight import check_data
from densenet_ray.train.run.ray_storage import ray_storage
from densenet_ray.tune import progress, report
from densenet_ray.tune.leftovers import remove_leftovers
from densenet_ray.tune.sweeps import Distribution, Sweep, trial_label

DRIVER_RESOURCE = "TRAIN_DRIVER"
DRIVER_SHARE = 0.01  # of a CPU, or of the TRAIN_DRIVER resource, per trial driver


def trial_driver(tune_config: dict[str, Any]) -> None:
    """The Tune trainable: one training run, named after the trial so a restored trial resumes that run."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from densenet_ray.train.launcher import launch

    base = TrainConfig(**tune_config["base"])
    name = f"train-{ray.tune.get_context().get_trial_id()}"
    config = derive(base, tune_config.get("trial", {}), tune_config["trials_root"], name)
    launch(config, callbacks=[TuneReportCallback()], follow=False)


def driver_resources(cluster: dict[str, float]) -> dict[str, float]:
    """What each trial driver reserves: a sliver of ``TRAIN_DRIVER`` where the cluster defines it, else of a CPU."""
    if cluster.get(DRIVER_RESOURCE, 0) > 0:
        return {"cpu": 0, DRIVER_RESOURCE: DRIVER_SHARE}
    return {"cpu": DRIVER_SHARE}


def max_concurrent_trials(
    cluster: dict[str, float], workers: int, cpus_per_worker: int, gpu: bool, requested: int | None = None
) -> int:
    """How many trials can hold all their workers at once (at least 1), capped by ``requested``."""
    driver_cpu = 0.0 if cluster.get(DRIVER_RESOURCE, 0) > 0 else DRIVER_SHARE
    limit = math.floor(cluster.get("CPU", 0) / (workers * cpus_per_worker + driver_cpu) + 1e-9)
    if gpu:
        limit = min(limit, math.floor(cluster.get("GPU", 0) / workers))
    if cluster.get(DRIVER_RESOURCE, 0) > 0:
        limit = min(limit, math.floor(cluster[DRIVER_RESOURCE] / DRIVER_SHARE + 1e-9))
    limit = max(limit, 1)
    return min(limit, requested) if requested else limit


def _search_space(space: dict[str, Distribution]) -> dict[str, Any]:
    make = {
        "grid": lambda values: tune.grid_search(list(values)),
        "choice": lambda values: tune.choice(list(values)),
        "uniform": lambda values: tune.uniform(*values),
        "loguniform": lambda values: tune.loguniform(*values),
        "randint": lambda values: tune.randint(*values),
    }
    return {name: make[distribution.kind](distribution.values) for name, distribution in space.items()}


def _scheduler(sweep: Sweep, epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if sweep.scheduler == "asha":
        # time_attr "epoch": our own counter (Tune's training_iteration restarts from 0 after a restore).
        return ASHAScheduler(
            time_attr="epoch",
            max_t=epochs,
            grace_period=min(sweep.grace_period, epochs),
            reduction_factor=sweep.reduction_factor,
        )
    return FIFOScheduler()


# Which trials started and ended in this process's run. A trial started but never ended means the sweep was
# interrupted (Tune's ResultGrid reports such trials as terminated). Module state, because after a restore Tune
# uses the callback unpickled from the experiment, not the one built here.
_EVENTS: dict[str, set[str]] = {"started": set(), "ended": set()}


class TrialProgress(tune.Callback):
    """A line per trial epoch and failure, in the driver (Tune's own reporter is off); picklable, as Tune stores
    the run configuration with the experiment."""

    def __init__(self, searched: list[str], total: int = 0) -> None:
        self.searched, self.total = searched, total

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _EVENTS["started"].add(trial.trial_id)
        self._count(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "test_error" not in result:
            return
        base, changes = trial.config["base"], trial.config.get("trial", {})
        options = TrainConfig.from_sources(base, changes, origins=("the sweep's options", "the trial"))
        label = trial_label(options, self.searched)
        progress.say(
            f"{label} [{trial.trial_id}] epoch {result['epoch']}/{result['epochs']}: "
            f"test error {100 * result['test_error']:.2f} %, {result['seconds_per_iteration']:.3f} s/iter, "
            f"{result['images_per_s']:.1f} img/s"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _EVENTS["ended"].add(trial.trial_id)
        self._count(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _EVENTS["ended"].add(trial.trial_id)
        progress.say(f"trial {trial.trial_id} failed; its log: {trial.error_file or trial.local_path}")
        self._count(trials)

    def _count(self, trials: list) -> None:
        """Trials ended, this session's and those a restored sweep had finished before."""
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | _EVENTS["ended"]
        progress.trials_done(len(ended), max(self.total, len(trials)))


def _validate(sweep: Sweep, base: TrainConfig, trials_root: str) -> None:
    """Every grid trial (or one sample of the space) must be a valid training configuration before Ray starts."""
    samples = sweep.grid or [{name: d.values[0] for name, d in sweep.space.items()}]
    for trial in samples:
        derive(base, trial, trials_root, "check")


def _describe(sweep: Sweep, base: ResolvedConfig, name: str, experiment: str) -> tuple[dict[str, Any], list[str]]:
    """``sweep.json``'s content and the searched options; a resumed sweep keeps what it was started with (Tune
    restores its own parameter space)."""
    searched = sorted(sweep.space) if sweep.space else []
    description: dict[str, Any] = {
        "kind": sweep.kind,
        "baseline": sweep.baseline,
        "searched": searched,
        "scheduler": sweep.scheduler,
    }
    description.update(grid=sweep.grid, space={k: asdict(v) for k, v in sweep.space.items()}, options=base.flat())
    try:
        saved = report.read_sweep(experiment)
        if saved:
            sweep.baseline = saved.get("baseline")
            return saved, list(saved.get("searched") or [])
        open_storage(experiment).write_bytes(report.SWEEP_FILE, json.dumps(description, indent=2).encode())
    except (StorageError, OSError) as error:
        raise StorageError(f"--storage {base.options.storage} is not writable ({error})") from None
    return description, searched


def _experiment_path(storage: str, name: str) -> tuple[str, str, Any]:
    """Tune's ``(storage_path, experiment path, filesystem)`` for the experiment ``name`` under ``storage``."""
    storage_path, filesystem = ray_storage(storage)
    return storage_path, storage_path.rstrip("/") + "/" + name if filesystem else child_url(storage, name), filesystem


def check_restore(base: ResolvedConfig, name: str) -> None:
    """Restoring a sweep unpickles Tune's saved experiment, which runs code: a sweep of that name in remote storage
    restores only with ``--trust-storage`` (one line otherwise, before Ray starts)."""
    storage = base.options.storage
    assert storage is not None, "resolve() fills in the storage"
    if storage_trusted(storage, base.options.trust_storage):
        return
    _, path, filesystem = _experiment_path(storage, name)
    if tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        raise UserError(
            f"sweep {name} exists in {storage}: restoring it unpickles Tune's saved state, which runs code; add "
            f"{TRUST_STORAGE} if only you and those you trust can write there, or choose another --name"
        )


def _tuner(
    sweep: Sweep,
    base: ResolvedConfig,
    base_options: TrainConfig,
    name: str,
    concurrent: int,
    searched: list[str],
    trainable: Any,
    print_line: PrintLine,
) -> Any:
    """A new Tuner, or the restored one when the experiment exists under ``name``."""
    assert base.options.storage is not None and base.options.epochs is not None, "resolve() fills in both"
    storage_path, tune_path, filesystem = _experiment_path(base.options.storage, name)
    if tune.Tuner.can_restore(tune_path, storage_filesystem=filesystem):
        print_line(f"resuming sweep {name}: finished trials are kept, the others continue from checkpoints")
        return tune.Tuner.restore(
            tune_path, trainable=trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=filesystem
        )
    experiment = child_url(base.options.storage, name)
    space: dict[str, Any] = {"base": dataclasses.asdict(base_options)}
    space["trials_root"] = child_url(experiment, report.TRIALS_DIR)
    space["trial"] = tune.grid_search(sweep.grid) if sweep.grid else _search_space(sweep.space)
    workers = base.options.workers
    print_line(
        f"sweep {name}: {len(sweep.grid) or 'sampled'} trials x {sweep.num_samples}, {concurrent} at a time, "
        f"{workers} worker(s) each, scheduler {sweep.scheduler}"
    )
    tune_config = tune.TuneConfig(
        metric="test_error",
        mode="min",
        scheduler=_scheduler(sweep, base.options.epochs),
        num_samples=sweep.num_samples,
        max_concurrent_trials=concurrent,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        verbose=0,  # silent with the legacy reporter ray_session selects unless --verbose (its QUIET_OUTPUT)
        callbacks=[TrialProgress(searched, progress.expected_trials(sweep.grid, sweep.space, sweep.num_samples))],
    )
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def _fit(
    sweep: Sweep,
    base: ResolvedConfig,
    base_options: TrainConfig,
    name: str,
    max_concurrent: int | None,
    searched: list[str],
    print_line: PrintLine,
    options: RayOptions | None,
    console: Console | None = None,
) -> list[tuple[str, str]]:
    """Run the trials (a bar of trials done on ``console`` when it is a terminal); returns each failed trial's
    directory and one-line cause."""
    import ray

    execution = base.options
    needs = ClusterNeeds(
        cpus=execution.workers * execution.cpus_per_worker + DRIVER_SHARE,
        gpus=execution.workers if execution.gpu else 0,
        what=f"one trial of {execution.workers} workers x {execution.cpus_per_worker} CPU",
        resources={DRIVER_RESOURCE: 1},
        dashboard=True,
    )
    with ray_session(needs, options, print_line):
        remove_leftovers(print_line)  # an interrupted sweep's trial can leave its workers' CPUs held for good
        cluster = ray.cluster_resources()
        concurrent = max_concurrent_trials(
            cluster, execution.workers, execution.cpus_per_worker, execution.gpu, max_concurrent
        )
        trainable = tune.with_resources(trial_driver, driver_resources(cluster))
        for events in _EVENTS.values():
            events.clear()
        tuner = _tuner(sweep, base, base_options, name, concurrent, searched, trainable, print_line)
        progress.start(console, progress.expected_trials(sweep.grid, sweep.space, sweep.num_samples))
        try:
            grid = tuner.fit()
        finally:
            progress.stop()
        return [(result.path, _cause(result.error)) for result in grid if result.error]


def _cause(error: BaseException) -> str:
    """The innermost error's first line: Tune wraps the trial's own exception."""
    while (inner := getattr(error, "cause", None) or error.__cause__) is not None:
        error = inner
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines and "Traceback" in lines[0] else (lines[0] if lines else type(error).__name__)


def run_sweep(
    sweep: Sweep,
    base_options: TrainConfig,
    name: str | None,
    max_concurrent: int | None,
    print_line: PrintLine = print,
    ray_options: RayOptions | None = None,
    console: Console | None = None,
) -> tuple[str, list[report.TrialRow]]:
    """Run (or resume, when ``name`` exists) ``sweep`` with ``base_options`` as every trial's options; returns the
    experiment URL and the rows (also saved as ``results.json`` and ``results.csv``). Rows of failed trials carry
    their one-line cause. ``console``: where a terminal shows the bar of trials done."""
    fixed = {key: value for key, value in sweep.options.items()}
    options = TrainConfig.from_sources(
        dataclasses.asdict(base_options), fixed, origins=("flags", "the sweep's options")
    )
    base = resolve(dataclasses.replace(options, name=None))  # checked once, starting weights included
    check_data(base, print_line)
    trial_options = anchored(options, base)
    name = name or f"{sweep.kind}-{base.options.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    assert base.options.storage is not None, "resolve() fills in the storage"
    experiment = child_url(base.options.storage, name)
    _validate(sweep, trial_options, child_url(experiment, report.TRIALS_DIR))
    check_restore(base, name)
    description, searched = _describe(sweep, base, name, experiment)
    failures = _fit(sweep, base, trial_options, name, max_concurrent, searched, print_line, ray_options, console)
    rows = report.collect(experiment, sweep.baseline, searched)
    unfinished = _EVENTS["started"] - _EVENTS["ended"]
    for row in rows:
        trial_id = row.trial.removeprefix("train-")
        if row.status != "complete":  # Tune's trial directories carry the trial id, as our run names do
            cause = next((cause for path, cause in failures if trial_id in path), None)
            row.status = "error" if cause is not None else "interrupted" if trial_id in unfinished else "stopped"
            row.cause = cause or ""
    if unfinished:
        raise SweepInterrupted(f"sweep {name} interrupted; rerun with --name {name} to finish it")
    report.save(experiment, rows, {"name": name, "experiment": experiment, **description})
    return experiment, rows


class SweepInterrupted(Interrupted):
    """The sweep stopped before all its trials ended (Ctrl+C); its state is saved and the same name resumes it."""
