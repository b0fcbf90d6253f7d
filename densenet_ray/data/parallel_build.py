"""``data build --parallel N``: shard ranges written by N Ray tasks (ImageNet's 1.28 M images on a cluster).

Each task gets a contiguous range of shards, re-opens the source and the storage in its own process and returns
its shard infos and pixel statistics; the driver merges them and writes the manifest. Connects to ``RAY_ADDRESS``
when set, else starts a local Ray instance with N CPUs and shuts it down afterwards.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from densenet_ray.data.manifest import ShardInfo
from densenet_ray.data.shards import PixelStats
from densenet_ray.data.sources import Source


def _task_ranges(num_shards: int, tasks: int) -> list[range]:
    per_task = -(-num_shards // tasks)
    return [range(start, min(start + per_task, num_shards)) for start in range(0, num_shards, per_task)]


def build_in_ray_tasks(
    source: Source, out_url: str, endpoint_url: str | None, plan: Any, parallel: int, progress: Any
) -> tuple[list[ShardInfo], PixelStats]:
    import ray

    from densenet_ray.data.build import build_shard_range
    from densenet_ray.data.storage import open_storage

    @ray.remote(num_cpus=1)
    def build_range(shards: range, reporter: Any) -> tuple[list[ShardInfo], PixelStats]:
        pending = [0, 0]

        def report(samples: int, size: int) -> None:
            pending[0] += samples
            pending[1] += size
            if pending[0] >= 256:  # one queue call per few hundred samples, not per sample
                reporter.put(tuple(pending))
                pending[:] = [0, 0]

        result = build_shard_range(source, open_storage(out_url, endpoint_url), plan, shards, report)
        if pending[0]:
            reporter.put(tuple(pending))
        return result

    started_here = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    if started_here:
        ray.init(num_cpus=parallel, include_dashboard=False, log_to_driver=False)
    elif not ray.is_initialized():
        ray.init(log_to_driver=False)
    try:
        from ray.util.queue import Queue

        reporter = Queue()
        stop = threading.Event()
        forwarder = threading.Thread(target=_forward, args=(reporter, progress, stop), daemon=True)
        forwarder.start()
        refs = [build_range.remote(shards, reporter) for shards in _task_ranges(plan.num_shards, parallel)]
        results = ray.get(refs)
        stop.set()
        forwarder.join()
    finally:
        if started_here:
            ray.shutdown()
    infos: list[ShardInfo] = []
    stats = PixelStats()
    for range_infos, range_stats in results:
        infos.extend(range_infos)
        stats.merge(range_stats)
    return infos, stats


def _forward(reporter: Any, progress: Any, stop: threading.Event) -> None:
    while not (stop.is_set() and reporter.empty()):
        try:
            samples, size = reporter.get(timeout=0.2)
        except (queue.Empty, Exception):  # ray.util.queue raises its own Empty
            continue
        if progress:
            progress(samples, size)
