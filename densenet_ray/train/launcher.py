"""Starting a training run on Ray Train, after every check that can be made before a worker starts.

:func:`launch` takes a resolved config. Before Ray starts it builds the default dataset cache if needed, opens
both manifests, refuses a resume whose options change the computation, takes the run directory's lease, finds the
newest committed checkpoint that loads, and writes ``config.yaml`` (the lease and the writes come after Ray has
checked that the run fits in the cluster). Then it runs the ``TorchTrainer`` on the cluster
:mod:`densenet_ray.ray_session` chooses. A failure inside Ray ends as :class:`~densenet_ray.errors.RunFailed`: one
line with the worker's own exception and rank, the full traceback in the run's ``error.txt``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from densenet_ray.data.storage import StorageError, child_url
from densenet_ray.errors import Interrupted, RunFailed
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.progress.follow import Display, Follower, LineDisplay
from densenet_ray.train.run.bad_steps import BAD_STEPS_FILE, read_bad_steps
from densenet_ray.train.run.directory import (
    PreemptionRecord,
    RunDirectory,
    clean_up,
    record_from_metrics,
)
from densenet_ray.train.run.preflight import check_run, claim_run
from densenet_ray.train.run.ray_storage import ray_storage

if TYPE_CHECKING:
    from rich.console import Console


def _metrics_callback(run_url: str) -> Any:
    import ray.train

    class MetricsLog(ray.train.UserCallback):
        """Appends rank 0's metrics of every report to metrics.jsonl, in the controller."""

        def __init__(self) -> None:
            self.run_url = run_url

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            RunDirectory(self.run_url).append(record_from_metrics(metrics[0]))

    return MetricsLog()


def cluster_needs(config: ResolvedConfig) -> ClusterNeeds:
    """What the run's worker group holds at once (an elastic run: at least its least workers)."""
    execution = config.options
    workers = config.least_workers
    cpus = workers * execution.cpus_per_worker
    what = f"{workers} workers x {execution.cpus_per_worker} CPU"
    most = execution.workers * execution.cpus_per_worker  # a private instance has room for all of them
    return ClusterNeeds(cpus=cpus, gpus=workers if execution.gpu else 0, private_cpus=most, what=what)


WORKER_SETTINGS = ("WANDB_MODE",)  # the trackers' settings the workers act on (W&B offline needs no key)


def _worker_env() -> dict[str, str]:
    """Our own settings (DENSENET_RAY_*) and the trackers' (:data:`WORKER_SETTINGS`) for the workers, which on a
    running cluster do not inherit this process's environment; credentials travel by the cluster's standard means."""
    own = {key: value for key, value in os.environ.items() if key.startswith("DENSENET_RAY_")}
    return {**own, **{key: os.environ[key] for key in WORKER_SETTINGS if key in os.environ}}


def _trainer(config: ResolvedConfig, callbacks: Sequence[Any]) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from densenet_ray.train.worker_entry import train_loop

    execution = config.options
    resources = {"CPU": execution.cpus_per_worker, **({"GPU": 1} if execution.gpu else {})}
    assert config.options.storage is not None, "resolve() fills in the storage"
    storage_path, filesystem = ray_storage(config.options.storage)
    # The type: ignore[...] below: ray.train and ray.train.torch export Ray Train v2's classes (the default, which
    # this run needs) only at run time, behind is_v2_enabled(); a type checker sees the v1 classes they replace.
    return TorchTrainer(
        train_loop,  # type: ignore[arg-type]
        train_loop_config=config.to_document(),
        scaling_config=ScalingConfig(
            # A (min, max) pair makes the group elastic: Ray Train restarts it with the workers it can get, and the
            # run resumes from its last checkpoint on the new world size (epoch_plan keeps every epoch exact).
            num_workers=(config.least_workers, execution.workers)  # type: ignore[arg-type]
            if config.least_workers < execution.workers
            else execution.workers,
            use_gpu=execution.gpu,
            resources_per_worker={**resources, **(execution.worker_resources or {})},
        ),
        run_config=RunConfig(  # type: ignore[call-arg]
            name=config.options.name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(
                max_failures=execution.max_failures,
                max_preemption_failures=execution.max_preemption_failures,  # type: ignore[call-arg]
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=execution.keep_checkpoints),
            callbacks=[_metrics_callback(config.run_url), *callbacks],
            worker_runtime_env={"env_vars": _worker_env()},
        ),
    )


@dataclass
class RunResult:
    """What a finished run returns: rank 0's last epoch record plus where things are."""

    final: dict[str, Any]
    run_dir: str
    wall_seconds: float
    checkpoint: str | None

    def summary(self) -> dict[str, Any]:
        return {**self.final, "run_dir": self.run_dir, "wall_seconds": self.wall_seconds, "checkpoint": self.checkpoint}


def launch(
    config: ResolvedConfig,
    print_line: PrintLine = print,
    callbacks: Sequence[Any] = (),
    follow: bool = True,
    ray_options: RayOptions | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run ``config`` on Ray Train; returns the last epoch's metrics plus ``run_dir``, ``wall_seconds`` and
    ``checkpoint``. ``callbacks`` are more Ray Train ``UserCallback``s (a Tune trial adds its
    ``TuneReportCallback``); ``follow`` shows progress while the run goes: a progress bar on ``console`` when it is
    a terminal, else lines through ``print_line``."""
    checked = check_run(config, print_line)  # before Ray starts: data, manifests, identity
    with ray_session(cluster_needs(config), ray_options, print_line):  # refuses a run the cluster cannot fit
        prepared = claim_run(checked, print_line)
        run = prepared.run
        try:
            follower = Follower(run.url, _display(console, print_line))
            if follow:
                follower.start()
            started, since = time.perf_counter(), time.time()
            try:
                result = _fit(prepared.config, callbacks, run)
            finally:
                follower.stop()
        finally:
            prepared.lease.release()
    clean_up(run, print_line)
    ended = nonfinite_end(run, since, config)
    if ended is not None:
        raise RunFailed(ended)
    checkpoint = child_url(run.url, os.path.basename(result.checkpoint.path.rstrip("/"))) if result.checkpoint else None
    final = dict(result.return_value or result.metrics or {})
    return RunResult(final, run.url, time.perf_counter() - started, checkpoint).summary()


def _display(console: Console | None, print_line: PrintLine) -> Display:
    if console is not None and console.is_terminal:
        from densenet_ray.train.progress.bar import BarDisplay

        return BarDisplay(console)
    return LineDisplay(print_line)


def _fit(config: ResolvedConfig, callbacks: Sequence[Any], run: RunDirectory) -> Any:
    """``trainer.fit()``; Ray's failure becomes :class:`RunFailed` with the cause."""
    from ray.train import PreemptionError, TrainingFailedError

    try:
        return _trainer(config, callbacks).fit()
    except PreemptionError as error:
        info = error.preemption_info
        raise RunFailed(preempted_line(info.preempted_node_ids, info.preempted_ranks, config)) from error
    except TrainingFailedError as error:
        ranks = preempted_ranks(error)
        if ranks:  # a reclaim Ray reports as a worker failure: charged to the preemption budget all the same
            raise RunFailed(preempted_line(notice_nodes(run, ranks), ranks, config)) from error
        raise RunFailed(failure_line(error, run)) from error
    except SystemExit as stop:  # Ctrl+C: Ray Train's SIGINT handler aborts the run and Ray's driver exits
        if threading.current_thread() is not threading.main_thread():
            raise  # a sweep's trial: Ray Train registers no SIGINT handler there, and Tune ends its own trials
        name = config.options.name
        raise Interrupted(
            f"run {name} interrupted; its last checkpoint is saved: rerun with --name {name} to resume it"
        ) from stop


def preempted_ranks(error: BaseException) -> list[int]:
    """The ranks whose worker died with its node's reclaim. Ray reports an announced preemption as a
    ``PreemptionError``, but a reclaim its controller had not yet polled as a worker group failure whose health check
    wraps a ``RayActorError`` with ``preempted`` set, and charges both to ``--max-preemption-failures``."""
    failures = dict(getattr(error, "worker_failures", None) or {})
    died = {rank: getattr(failure, "health_check_failure", failure) for rank, failure in failures.items()}
    return sorted(rank for rank, cause in died.items() if getattr(cause, "preempted", False) is True)


def notice_nodes(run: RunDirectory, ranks: list[int]) -> list[str]:
    """The nodes the run's last preemption notice named for any of ``ranks`` (empty when it recorded none)."""
    with contextlib.suppress(StorageError, OSError, ValueError):
        notices = [record for record in run.records() if isinstance(record, PreemptionRecord)]
        return next((notice.nodes for notice in reversed(notices) if set(notice.ranks) & set(ranks)), [])
    return []


def preempted_line(nodes: Sequence[str], ranks: Sequence[int], config: ResolvedConfig) -> str:
    """One line for a run that a preemption ended: ``--max-preemption-failures`` allowed no more resumes."""
    shown = ", ".join(node[:12] for node in nodes) or "?"
    allowed, name = config.options.max_preemption_failures, config.options.name
    return (
        f"run {name} ended: node(s) {shown} (rank(s) {', '.join(map(str, ranks))}) were preempted "
        f"and --max-preemption-failures {allowed} allows no more resumes; its checkpoint is saved: rerun with "
        f"--name {name} to resume it"
    )


def nonfinite_end(run: RunDirectory, since: float, config: ResolvedConfig) -> str | None:
    """The line for a run that non-finite steps ended (since ``since``, seconds since the Unix epoch), else None."""
    ended = [r for r in read_bad_steps(run.storage) if r.action == "ended" and (r.time or 0) >= since]
    if not ended:
        return None
    last, options = ended[-1], config.options
    shown = ", ".join(last.samples[:5]) + (f" and {len(last.samples) - 5} more" if len(last.samples) > 5 else "")
    return (
        f"run {options.name} ended at step {last.step} (epoch {last.epoch + 1}, batch {last.batch + 1}): "
        f"{options.max_bad_steps} optimizer steps in a row had a non-finite loss or gradient after "
        f"{last.rollbacks} rollback(s); the last one's samples: {shown or 'none'} (every skipped step's are in "
        f"{child_url(run.url, BAD_STEPS_FILE)}); try a lower --lr, --clip-grad-norm or --precision fp32 under a "
        "new --name, or more --max-rollbacks"
    )


def failure_line(error: BaseException, run: RunDirectory) -> str:
    """One line for a failed run: the first failing rank's exception type and first message line, and where the
    full traceback was saved (``error.txt``)."""
    failures = dict(getattr(error, "worker_failures", None) or {})
    if failures:
        rank = min(failures)
        cause = failures[rank]
        where = f"rank {rank}"
    else:
        cause = getattr(error, "controller_failure", None) or error
        where = "the Ray Train controller"
    # A RayTaskError's own first line is Ray's task header in terminal colours; the exception it carries says why.
    inner = getattr(cause, "cause", None)
    cause = inner if isinstance(inner, BaseException) else cause
    message = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    first = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    try:
        log = run.write_error(str(error))
    except (StorageError, OSError):
        log = "Ray's worker logs (the run directory was not writable)"
    return f"training failed on {where}: {first[:300]} (full traceback: {log})"
