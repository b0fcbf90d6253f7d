"""``data build --parallel N``: shard ranges written by N Ray tasks (ImageNet's 1.28 M images on a cluster).

Each task gets a contiguous range of shards, re-opens the source and the storage in its own process and returns
its shard infos and pixel statistics; the driver merges them and :func:`~densenet_ray.data.building.build.build_dataset`
writes the manifest. Ray comes from :mod:`densenet_ray.ray_session`: ``RAY_ADDRESS``, a cluster started on this
machine, or a private instance with N CPUs.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Any

from densenet_ray.data.building.build import BuildPlan, ProgressCallback, build_dataset, build_shard_range
from densenet_ray.data.building.shards import PixelStats
from densenet_ray.data.building.source_base import Source
from densenet_ray.data.format.manifest import Manifest, ShardInfo
from densenet_ray.data.storage import Storage
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session


def _task_ranges(num_shards: int, tasks: int) -> list[range]:
    per_task = -(-num_shards // tasks)
    return [range(start, min(start + per_task, num_shards)) for start in range(0, num_shards, per_task)]


def _build_range(
    source: Source, storage: Storage, plan: BuildPlan, shards: range, reporter: Any
) -> tuple[list[ShardInfo], PixelStats]:
    """One task's shards (storage objects pickle without a client: each process makes its own); progress goes to
    the driver a few hundred samples at a time, not per sample."""
    pending = [0, 0]

    def report(samples: int, size: int) -> None:
        pending[0] += samples
        pending[1] += size
        if pending[0] >= 256:
            reporter.put(tuple(pending))
            pending[:] = [0, 0]

    result = build_shard_range(source, storage, plan, shards, report)
    if pending[0]:
        reporter.put(tuple(pending))
    return result


def _write_in_tasks(
    parallel: int, source: Source, storage: Storage, plan: BuildPlan, progress: ProgressCallback | None
) -> tuple[list[ShardInfo], PixelStats]:
    import ray
    from ray.util.queue import Queue

    task = ray.remote(num_cpus=1)(_build_range)
    reporter = Queue()
    stop = threading.Event()
    forwarder = threading.Thread(target=_forward, args=(reporter, progress, stop), daemon=True)
    forwarder.start()
    try:
        refs = [
            task.remote(source, storage, plan, shards, reporter) for shards in _task_ranges(plan.num_shards, parallel)
        ]
        results = ray.get(refs)
    finally:
        stop.set()
        forwarder.join()
    infos: list[ShardInfo] = []
    stats = PixelStats()
    for range_infos, range_stats in results:
        infos.extend(range_infos)
        stats.merge(range_stats)
    return infos, stats


def build_dataset_parallel(
    source: Source,
    out_url: str,
    parallel: int,
    options: RayOptions | None = None,
    print_line: PrintLine = print,
    **build_options: Any,
) -> Manifest:
    """:func:`~densenet_ray.data.building.build.build_dataset` with the shards written by ``parallel`` Ray tasks."""
    needs = ClusterNeeds(cpus=1, private_cpus=parallel, what="one build task of 1 CPU")
    with ray_session(needs, options, print_line):
        return build_dataset(
            source, out_url, write_shards=functools.partial(_write_in_tasks, parallel), **build_options
        )


def _forward(reporter: Any, progress: ProgressCallback | None, stop: threading.Event) -> None:
    while not (stop.is_set() and reporter.empty()):
        try:
            samples, size = reporter.get(timeout=0.2)
        except (queue.Empty, Exception):  # ray.util.queue raises its own Empty
            continue
        if progress:
            progress(samples, size)
