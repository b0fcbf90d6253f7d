"""The epoch record a worker reports: built typed from what the epoch measured, and reported as the metrics that the
driver turns back into the same record and its ``metrics.jsonl`` line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from densenet_ray.train.acceleration import Acceleration
from densenet_ray.train.checkpoint.state import Position
from densenet_ray.train.engine import EvalStats, TrainStats
from densenet_ray.train.epoch import EpochOutcome
from densenet_ray.train.progress.records import Attempt, epoch_record, reported
from densenet_ray.train.run.directory import EpochRecord, MidEpochRecord, metrics_line, record_from_metrics


def _outcome(results: list[EvalStats], steady: tuple[int, float] | None) -> EpochOutcome:
    stats = TrainStats(data_seconds=1.0)
    logits = torch.eye(4)  # predicts classes 0, 1, 2 and 3
    stats.add(torch.tensor(2.0), logits, torch.tensor([0, 1, 2, 0]))  # 3 right
    stats.add(torch.tensor(1.0), logits, torch.tensor([0, 0, 0, 0]))  # 1 right: 4 of 8, loss 3 / 8
    return EpochOutcome(stats, results, train_seconds=4.0, steady=steady, lr=0.01, mean_lr=0.02, skipped=3, bad_steps=1)


def _attempt(first_step_seconds: float | None) -> Attempt:
    attempt = Attempt(0, 2, torch.device("cpu"), Acceleration("bf16", True, False), first_step_time=1e9)
    attempt.first_step_seconds = first_step_seconds
    return attempt


def test_the_record_holds_what_the_epoch_measured_over_every_rank() -> None:
    result = EvalStats(loss=0.5, top1_error=0.25, top5_error=0.05, samples=100)
    average = EvalStats(loss=0.4, top1_error=0.2, top5_error=0.04, samples=100)
    position = Position(epoch=2, global_step=20, best_error=0.25)
    record = epoch_record(_attempt(7.5), position, 5, _outcome([result, average], steady=(6, 2.0)))
    assert isinstance(record, EpochRecord)
    values = dataclasses.asdict(record)
    assert values.pop("peak_memory_mb") > 0
    assert values == {
        **{field.name: None for field in dataclasses.fields(EpochRecord) if field.name != "peak_memory_mb"},
        "epoch": 2,
        "epochs": 5,
        "step": 20,
        "loss": 3 / 8,
        "train_error": 0.5,
        "test_loss": 0.5,
        "test_error": 0.25,
        "test_top5_error": 0.05,
        "best_test_error": 0.25,
        "test_samples": 100,
        "ema_test_loss": 0.4,
        "ema_test_error": 0.2,
        "ema_test_top5_error": 0.04,
        "lr": 0.01,
        "mean_lr": 0.02,
        "images_per_s": 8 * 2 / 4.0,  # this rank's samples times the world size, over the training seconds
        "steady_images_per_s": 6 * 2 / 2.0,
        "first_step_time": 1e9,
        "first_step_seconds": 7.5,
        "acceleration": "bf16 autocast, channels_last, eager",
        "seconds_per_iteration": 2.0,
        "epoch_seconds": 4.0,
        "data_wait_fraction": 0.25,
        "skipped_samples": 3,
        "bad_steps": 1,
        "world_size": 2,
    }


def test_a_multi_label_record_has_the_ranking_figures_and_no_top5() -> None:
    ranking = {"auroc": 0.9, "map": 0.8, "f1": 0.7, "auroc_by_class": {"cat": 0.95, "dog": None}}
    result = EvalStats(0.5, 0.25, None, 100, ranking=ranking)
    average = EvalStats(0.4, 0.2, None, 100, ranking={**ranking, "auroc": 0.85})
    record = epoch_record(_attempt(None), Position(epoch=1), 1, _outcome([result, average], steady=None))
    figures = (record.test_error, record.test_auroc, record.test_map, record.test_f1)
    assert figures == pytest.approx((0.1, 0.9, 0.8, 0.7))  # ranked by 1 - mean AUROC
    assert record.test_auroc_by_class == {"cat": 0.95, "dog": None} and record.ema_test_auroc == 0.85
    assert record.test_top5_error is None and record.ema_test_error == pytest.approx(0.15)
    assert record.steady_images_per_s == record.images_per_s  # too short an epoch for a steady rate


def test_the_reported_metrics_are_the_record_the_driver_writes() -> None:
    result = EvalStats(loss=0.5, top1_error=0.25, top5_error=None, samples=100)
    record = epoch_record(_attempt(None), Position(epoch=3, global_step=30), 5, _outcome([result], steady=None))
    record = dataclasses.replace(record, stopped="--limit-epochs 3")
    metrics = reported(record)
    assert None not in metrics.values() and "first_step_seconds" not in metrics and "ema_test_loss" not in metrics
    assert metrics["stopped"] == "--limit-epochs 3" and metrics["skipped_samples"] == 3
    assert record_from_metrics(metrics) == record  # what the driver reads back (run/directory.py)
    line = json.loads(metrics_line(record_from_metrics(metrics)))
    assert list(line) == [field.name for field in dataclasses.fields(EpochRecord)]
    assert {key: value for key, value in line.items() if key != "time"} == {
        key: value for key, value in dataclasses.asdict(record).items() if key != "time"
    }
    mid = MidEpochRecord(epoch=0, step=5, loss=1.5, world_size=2)
    assert reported(mid) == {"epoch": 0, "step": 5, "loss": 1.5, "mid_epoch": True, "world_size": 2}
    assert record_from_metrics(reported(mid)) == mid
