"""``--profile-steps A-B``: a ``torch.profiler`` trace of global steps A to B on every rank, and a summary of it.

Each rank writes its Chrome trace, gzipped, to ``tensorboard/profile/rank<r>.pt.trace.json.gz`` in the run directory
(local or ``s3://``): TensorBoard's PyTorch profiler plugin lists it under the ``profile`` run of the run's
``tensorboard/`` directory, and Perfetto (ui.perfetto.dev) opens the file as it is. Every rank also sums its own
trace into a :class:`ProfileRecord`: the operators (device kernels on a GPU) with the most self time, and the share
of the traced time spent waiting for the data loader and in DDP's collectives (gloo or NCCL, which overlap backward).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

from densenet_ray.data.storage import Storage
from densenet_ray.train.config.values import StepRange
from densenet_ray.train.run.directory import TENSORBOARD_DIR
from densenet_ray.train.run.record_shapes import ProfileRecord

DATA_WAIT = "data_loader"  # the record_function around each batch fetch (engine.train_epoch)
TRACE_DIR = f"{TENSORBOARD_DIR}/profile"  # in the run directory: TensorBoard's plugin shows it as the run "profile"
TOP_OPERATORS = 12
_COMMUNICATION = ("gloo:", "nccl")  # gloo's and NCCL's own annotations and kernels


def summarise(events: Any, seconds: float, steps: StepRange, on_gpu: bool) -> ProfileRecord:
    """The summary of a profiler's ``key_averages()`` over ``seconds`` of traced time."""
    wall_us = max(seconds * 1e6, 1e-9)
    data_us = sum(event.cpu_time_total for event in events if event.key == DATA_WAIT)
    communication_us = sum(
        event.device_time_total if on_gpu and event.device_time_total else event.cpu_time_total
        for event in events
        if event.key.lower().startswith(_COMMUNICATION)
    )

    def self_us(event: Any) -> float:
        return event.self_device_time_total if on_gpu else event.self_cpu_time_total

    # On a CPU the work is in the aten operators; on a GPU in the kernels (device events with self time).
    candidates = [event for event in events if self_us(event) > 0 and (on_gpu or event.key.startswith("aten::"))]
    total = max(sum(self_us(event) for event in candidates), 1e-9)
    ranked = sorted(candidates, key=self_us, reverse=True)[:TOP_OPERATORS]
    operators = [(event.key, self_us(event) / 1e3, self_us(event) / total, int(event.count)) for event in ranked]
    return ProfileRecord(
        first=steps.first,
        last=steps.last,
        seconds=seconds,
        data_share=data_us / wall_us,
        communication_share=min(communication_us / wall_us, 1.0),
        operators=operators,
        device="GPU" if on_gpu else "CPU",
    )


class StepProfiler:
    """Traces this rank's global steps ``steps.first`` to ``steps.last``: :meth:`step_done` after every optimizer
    step (and once with the position before the first) starts and stops it; :meth:`finish` ends a trace the run's
    end cut short."""

    def __init__(self, steps: StepRange | None, rank: int, on_gpu: bool) -> None:
        self.steps, self.rank, self.on_gpu = steps, rank, on_gpu
        self._profiler: Any = None  # tracing now
        self._finished: Any = None  # stopped, its trace not written yet
        self._started = 0.0

    def step_done(self, global_step: int) -> ProfileRecord | None:
        """After global step ``global_step`` (0: none yet): start before the first traced step, mark each traced
        step, and after the last return the summary (the trace is then ready for :meth:`write`)."""
        steps = self.steps
        if steps is None:
            return None
        if self._profiler is None and global_step == steps.first - 1:
            self._start()
            return None
        if self._profiler is not None:
            if global_step >= steps.last:
                return self.finish()
            self._profiler.step()  # the next ProfilerStep#N span in the trace
        return None

    def _start(self) -> None:
        from torch.profiler import ProfilerAction, ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.on_gpu else [])
        # A schedule that always records: with one, the profiler marks each step as a ProfilerStep#N span.
        self._profiler = profile(activities=activities, schedule=lambda step: ProfilerAction.RECORD)
        self._profiler.start()
        self._started = time.perf_counter()

    def finish(self) -> ProfileRecord | None:
        """Stop a trace in progress and return its summary (None when none is in progress); once per attempt."""
        profiler, steps = self._profiler, self.steps
        if profiler is None or steps is None:
            return None
        profiler.stop()
        seconds = time.perf_counter() - self._started
        self._profiler, self._finished, self.steps = None, profiler, None
        return summarise(profiler.key_averages(), seconds, steps, self.on_gpu)

    def write(self, storage: Storage, record: ProfileRecord) -> ProfileRecord:
        """Write the finished trace, gzipped, into ``storage`` (the run directory's); ``record`` with where."""
        name = f"{TRACE_DIR}/rank{self.rank}.pt.trace.json.gz"
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "trace.json")
            self._finished.export_chrome_trace(path)
            with open(path, "rb") as handle:
                storage.write_bytes(name, gzip.compress(handle.read(), compresslevel=6))
        self._finished = None
        return replace(record, traces=storage.join(TRACE_DIR))
