"""``densenet-ray predict MODEL DATA --out DIR``: a shard set classified on the Ray cluster with Ray Data.

One read task a shard turns its samples into rows (the project's own shard reader: resumable S3 reads, and each
row keeps the shard it came from, which ``ray.data.read_webdataset``'s path column does not: it names the shard's
prefix only); an actor pool of ``--concurrency`` actors, each holding the model once (and a GPU with ``--gpu``),
classifies batches of rows; the driver gathers each shard's rows and writes its Parquet file once every sample of
the shard is accounted for (:mod:`densenet_ray.inference.outputs`). The cluster is chosen as training chooses it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from densenet_ray.data.format.manifest import ShardInfo, load_manifest
from densenet_ray.data.storage import Storage, StorageError
from densenet_ray.errors import DataError, RunFailed, UserError
from densenet_ray.inference.outputs import Labels, open_output, pending, write_predictions
from densenet_ray.inference.predictor import ModelChoice, ShardPredictor, shard_rows
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session

# Each actor leaves a tenth of a CPU to the shard readers, so a pool as large as the cluster cannot starve them.
ACTOR_CPUS, READ_CPUS = 0.9, 0.1


@dataclass(frozen=True)
class BatchJob:
    """What to classify (the shards of ``data``'s ``split``), with what, and where the Parquet files go."""

    model: ModelChoice
    data: str
    out: str
    split: str | None = None
    batch_size: int = 64
    concurrency: int = 1
    gpu: bool = False


@dataclass
class BatchSummary:
    """What a job did: shards written now and before, images classified, samples skipped, seconds taken."""

    shards: int = 0
    already: int = 0
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def check_job(job: BatchJob) -> None:
    if job.concurrency < 1:
        raise UserError(f"--concurrency {job.concurrency} must be at least 1 (the actors holding the model)")
    if job.batch_size < 1:
        raise UserError(f"--batch-size {job.batch_size} must be at least 1")


def run_batch(job: BatchJob, print_line: PrintLine = print, ray: RayOptions | None = None) -> BatchSummary:
    """Classify every shard of ``job.data`` whose Parquet file ``job.out`` does not hold yet."""
    check_job(job)
    storage, manifest = load_manifest(job.data, job.split)
    model = job.model.load()  # before Ray starts: a model that does not load is one line
    if job.gpu:
        model.check_movable()
    labels = Labels(tuple(model.classes), model.multi_label)
    out = open_output(job.out)
    todo = pending(manifest.shards, out)
    summary = BatchSummary(already=len(manifest.shards) - len(todo))
    if not todo:
        print_line(f"all {len(manifest.shards)} shard(s) of {manifest.split} already have predictions in {job.out}")
        return summary
    what = f"{job.concurrency} inference actor(s)" + (" with a GPU each" if job.gpu else "")
    needs = ClusterNeeds(
        cpus=job.concurrency * ACTOR_CPUS + READ_CPUS, gpus=job.concurrency if job.gpu else 0, what=what
    )
    with ray_session(needs, ray, print_line):
        started = time.perf_counter()
        _collect(_dataset(job, storage, todo, ray), todo, out, labels, summary, print_line)
        summary.seconds = time.perf_counter() - started
    summary.shards = len(todo)
    return summary


def _dataset(job: BatchJob, storage: Storage, todo: Sequence[ShardInfo], ray_options: RayOptions | None) -> Any:
    import ray.data

    return _shard_rows_dataset(storage, todo, ray_options).map_batches(
        ShardPredictor,
        fn_constructor_kwargs={"choice": job.model, "gpu": job.gpu},
        batch_size=job.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=job.concurrency),
        num_cpus=ACTOR_CPUS,
        num_gpus=1 if job.gpu else 0,
    )


def _shard_rows_dataset(storage: Storage, todo: Sequence[ShardInfo], ray_options: RayOptions | None) -> Any:
    """The shards' samples as rows, one read task a shard."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # A task's own exception, not Ray Data's UserCodeException around it (whose message names neither the shard
    # reader's DataError nor a bug's type, file and line): see _collect.
    context.raise_original_map_exception = True
    if not (ray_options and ray_options.verbose):  # Ray Data's progress chatter stays in Ray's log files
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning, module="ray.data")
    items = [{"shard": dataclasses.asdict(shard)} for shard in todo]
    return ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
        shard_rows,  # type: ignore[arg-type]  # Ray types the function as taking the row alone, not fn_kwargs too
        fn_kwargs={"data": storage.url},
        num_cpus=READ_CPUS,
    )


def _collect(
    dataset: Any,
    todo: Sequence[ShardInfo],
    out: Storage,
    labels: Labels,
    summary: BatchSummary,
    print_line: PrintLine,
) -> None:
    """Gather the classified rows by shard; a shard's file is written as soon as all its samples are in."""
    shards = {shard.name: shard for shard in todo}
    gathered: dict[str, list[dict[str, Any]]] = {name: [] for name in shards}
    seen = dict.fromkeys(shards, 0)
    for name in [name for name, shard in shards.items() if not shard.samples]:  # nothing to classify: written now
        write_predictions(out, shards[name], gathered.pop(name), labels)
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for row in _rows(batch):
                name = row.pop("shard")
                seen[name] += 1
                if name not in gathered:
                    listed = shards[name].samples
                    raise DataError(f"shard {name} holds more samples than the {listed} its manifest lists")
                error = row.pop("error")
                if error:
                    summary.skipped.append(f"{name}/{row['key']}")
                    print_line(f"skipped {name}/{row['key']}: {error}")
                else:
                    gathered[name].append(row)
                    summary.images += 1
                if seen[name] == shards[name].samples:
                    write_predictions(out, shards[name], gathered.pop(name), labels)
    except Exception as error:  # the shards disagree with their manifest, or a task or actor failed inside Ray
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, DataError | StorageError):  # the shard set's own problem, as the reader said it
            first = str(cause).split("\n", 1)[0]  # without the retry advice Ray Data appends to a task's error
            raise (cause if cause is error else type(cause)(first)) from None
        if not _lost_by_the_cluster(cause):  # a Python error in a task is a bug: its traceback, file and line
            raise
        message = next((line for line in str(cause).splitlines() if line.strip()), "")
        raise RunFailed(f"batch inference failed: {type(cause).__name__}: {message[:300]}") from error
    short = {name: seen[name] for name in gathered}
    if short:
        counts = ", ".join(f"{name} ({count} of {shards[name].samples})" for name, count in short.items())
        raise DataError(f"shard(s) ended before the samples their manifest lists: {counts}")


def _lost_by_the_cluster(error: BaseException) -> bool:
    """Ray's own failure, not a task's exception: a worker, actor or node lost (killed for memory, preempted),
    an object lost, the object store full. One line for these; anything else a task raised is a bug."""
    from ray.exceptions import RayError, RayTaskError, UserCodeException

    return isinstance(error, RayError) and not isinstance(error, RayTaskError | UserCodeException)


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A numpy batch as one dict per row."""
    names = list(batch)
    return [dict(zip(names, values, strict=True)) for values in zip(*(batch[name] for name in names), strict=True)]
