"""``--profile-steps A-B``: the range's one-line refusals, and a real trace of DenseNet steps on the CPU, summarised
and written where TensorBoard's plugin looks, readable by torch.profiler's own trace loader."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.data.storage import open_storage
from densenet_ray.errors import UserError
from densenet_ray.models import create_model
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.values import StepRange, parse_profile_steps
from densenet_ray.train.engine import StepContext, train_epoch
from densenet_ray.train.profiling import TRACE_DIR, StepProfiler
from densenet_ray.train.progress.follow import record_line
from densenet_ray.train.run.directory import record_from_metrics


def test_parse_profile_steps() -> None:
    assert parse_profile_steps("") is None
    assert parse_profile_steps("10-15") == StepRange(10, 15)
    assert parse_profile_steps(" 3-3 ") == StepRange(3, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", "--profile-steps '10' must be A-B, the first and last global step to trace, e.g. 10-15"),
        ("a-b", "--profile-steps 'a-b' must be A-B, the first and last global step to trace, e.g. 10-15"),
        ("5-2", "--profile-steps '5-2': steps count from 1 and B must be at least A, e.g. 10-15"),
        ("0-2", "--profile-steps '0-2': steps count from 1 and B must be at least A, e.g. 10-15"),
    ],
)
def test_a_malformed_range_is_one_line(text, message) -> None:
    with pytest.raises(UserError) as raised:
        TrainConfig(dataset="cifar10", profile_steps=text).validate()
    assert str(raised.value) == message


def test_steps_two_to_three_are_traced_summarised_and_written(tmp_path, cifar_shards) -> None:
    """Four steps of a small DenseNet through the engine over real CIFAR-10 shards; steps 2 and 3 are traced (the
    profiler starts after step 1 and stops after step 3)."""
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=10, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    context = StepContext(model, torch.device("cpu"), optimizer=optimizer)
    profiler = StepProfiler(StepRange(2, 3), rank=1, on_gpu=False)
    finished = []

    def after(index: int, stats: object) -> None:
        done = profiler.step_done(index + 1)
        finished.extend([index + 1] if done else [])
        if done:
            summaries.append(done)

    summaries: list = []
    assert profiler.step_done(0) is None
    loader = make_loader(PipelineConfig(cifar_shards, "train", 25, loader_workers=0), cifar_eval())
    train_epoch(context, loader, schedule=lambda index: 0.1, max_steps=4, on_step=after)
    assert finished == [3]
    (summary,) = summaries
    assert (summary.first, summary.last, summary.device) == (2, 3, "CPU")
    names = [name for name, *_ in summary.operators]
    assert any("convolution" in name for name in names) and any("batch_norm" in name for name in names)
    assert all(name.startswith("aten::") for name in names)
    assert 0 < summary.data_share < 1 and summary.communication_share == 0.0  # one process: no collectives
    assert sum(share for _, _, share, _ in summary.operators) <= 1.0 + 1e-9

    record = profiler.write(open_storage(str(tmp_path)), summary)
    trace = tmp_path / TRACE_DIR / "rank1.pt.trace.json.gz"
    assert record.traces == str(tmp_path / TRACE_DIR)
    from torch.profiler._trace_validator import _load_events, validate_trace

    passed, violations = validate_trace(str(trace))
    assert passed, violations
    events = _load_events(str(trace))
    assert sum(1 for event in events if str(event.get("name", "")).startswith("ProfilerStep#")) == 2
    assert profiler.step_done(5) is None  # once per attempt

    # The record as metrics.jsonl stores it, and as the driver prints it
    line = record_line(record_from_metrics(json.loads(json.dumps({**record.__dict__}))))
    assert (
        line.startswith("profile of steps 2-3 (")
        and "aten::" in line
        and f"every rank's trace: {tmp_path / TRACE_DIR}" in line
    )
    assert json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]  # plain Chrome trace JSON, as Perfetto reads
