"""``dr.evaluate(...)``: the exact top-1/top-5 error of saved weights on a split of sharded data, in this process."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import torch

from densenet_ray.errors import UserError
from densenet_ray.train.config.choices import Precision
from densenet_ray.train.config.declaration import check_value
from densenet_ray.train.config.options import training_option

if TYPE_CHECKING:
    from densenet_ray.data.reading.pipeline import Loader
    from densenet_ray.train.checkpoint.trained import TrainedModel
    from densenet_ray.train.engine import EvalStats


def evaluate(
    source: str | os.PathLike,
    data: str | None = None,
    split: str | None = None,
    which: str = "last",
    weights: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    batch_size: int = 100,
    loader_workers: int = 1,
    precision: Precision | None = None,
    per_class: bool = False,
) -> dict[str, Any]:
    """Evaluate the model at ``source`` (a run directory, a run checkpoint, or a torchvision-format state_dict with
    ``model`` and ``dataset``; see :func:`densenet_ray.load`) on ``split`` of the shards at ``data`` (default: the
    run's shards, and its evaluation split, else ``test``). ``precision``: default the run's (``auto`` resolves for
    this machine, as training does); ``fp32`` is the exact reference. Returns ``model``, ``data``, ``split``,
    ``precision``, ``weights``, ``checkpoint``, ``samples``, ``loss``, ``top1_error`` and ``top5_error`` (None for 5
    classes or fewer, and for multi-label data); with
    ``per_class``, also ``per_class`` (a row of precision, recall, F1 and support per class), ``confusions`` (the most
    frequent ``(true, predicted, count)``) and ``confusion_matrix`` (rows: true class)."""
    if precision is not None:  # before PyTorch's libraries are imported: a mistyped value is one line at once
        check_value(training_option("precision"), precision)
    from densenet_ray.train.acceleration import choose
    from densenet_ray.train.checkpoint.trained import load_trained
    from densenet_ray.train.engine import StepContext
    from densenet_ray.train.engine import evaluate as evaluate_batches

    trained = load_trained(os.fspath(source), which, weights, model, dataset)
    split = split or trained.options.eval_split or "test"
    data = data or trained.options.data
    if not data:
        raise UserError(f"{source} is a plain state_dict: give the shards to evaluate on (--data)")
    loader = _loader(trained, data, split, batch_size, loader_workers)
    device = torch.device("cpu")
    chosen = choose(precision or trained.options.precision, False, False, device, 0).precision
    context = StepContext(trained.network, device, chosen)
    context.settings.multi_label = trained.multi_label
    result = evaluate_batches(context, loader, keep_outputs=per_class)
    if trained.multi_label:
        report = _multi_label(result, trained.classes, data, split, per_class)
    else:
        report = _per_class(result, trained.classes, data, split) if per_class else {}
    return {
        "model": trained.name,
        "data": data,
        "split": split,
        "precision": chosen,
        "weights": trained.weights,
        "checkpoint": trained.source,
        "samples": result.samples,
        "loss": result.loss,
        "top1_error": result.top1_error,
        "top5_error": result.top5_error,
        **report,
    }


def _loader(trained: TrainedModel, data: str, split: str, batch_size: int, loader_workers: int) -> Loader:
    """Every sample of ``split`` once, decoded and transformed as the model's training evaluated."""
    from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.reading.transforms import for_dataset

    config = PipelineConfig(
        data=data,
        split=split,
        batch_size=batch_size,
        loader_workers=loader_workers,
        train=False,
        tensor_decode=trained.dataset == "images",  # as training decoded them
    )
    return make_loader(config, for_dataset(trained.dataset, train=False, spec=trained.input))


def _multi_label(result: EvalStats, classes: list[str], data: str, split: str, per_class: bool) -> dict[str, Any]:
    """Mean AUROC, mean average precision and macro F1 (``top1_error`` is then the share of images with any class
    wrong at 0.5); with ``per_class``, each class's row with its AUROC."""
    from densenet_ray.train.metrics import multi_label_report, multi_label_summary

    if not result.samples or result.outputs is None:
        raise UserError(f"no sample of {split} at {data} carries labels")
    report = multi_label_report(*result.outputs, classes)
    summary = multi_label_summary(report)
    figures = {key: summary[key] for key in ("auroc", "map", "f1")}
    return {**figures, **({"per_class": [dataclasses.asdict(row) for row in report.rows]} if per_class else {})}


def _per_class(result: EvalStats, classes: list[str], data: str, split: str) -> dict[str, Any]:
    from densenet_ray.train.metrics import single_label_report

    if not result.samples or result.outputs is None:
        raise UserError(f"--per-class: no sample of {split} at {data} carries a label")
    report = single_label_report(*result.outputs, classes)
    assert report.matrix is not None
    return {
        "per_class": [dataclasses.asdict(row) for row in report.rows],
        "confusions": [list(cell) for cell in report.confusions],
        "confusion_matrix": report.matrix.tolist(),
    }
