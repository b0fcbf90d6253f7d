"""How each class does, from every evaluated sample's logits and label: precision, recall, F1 and support per class
and the most frequent confusions (single-label), or AUROC, average precision and F1 per class (multi-label). The
confusion matrix and the ranking metrics are torchmetrics'; pure functions of the predictions, so a distributed
evaluation that gathers them computes exactly what one process does."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_THRESHOLD = 0.5  # multi-label: a class is predicted where its sigmoid is at least this


@dataclass(frozen=True)
class ClassRow:
    """One class's figures (``auroc`` and ``average_precision`` for multi-label data only; ``None`` where the
    evaluated samples hold no positive or no negative of the class)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    auroc: float | None = None
    average_precision: float | None = None


@dataclass(frozen=True)
class ClassReport:
    """Every class's row, and for single-label data the confusion matrix (rows: true class, columns: predicted)
    and its largest off-diagonal cells as ``(true, predicted, count)``, most frequent first."""

    rows: list[ClassRow]
    matrix: torch.Tensor | None = None
    confusions: list[tuple[str, str, int]] = field(default_factory=list)


def single_label_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], most: int = 10) -> ClassReport:
    """Precision, recall, F1 and support of every class (torchmetrics', 0 where a ratio has nothing to count), and
    the ``most`` most frequent confusions."""
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    count = len(classes)
    predicted = logits.argmax(1)
    kwargs: dict[str, Any] = {"num_classes": count, "average": None}
    precision = multiclass_precision(predicted, labels, **kwargs)
    recall = multiclass_recall(predicted, labels, **kwargs)
    f1 = multiclass_f1_score(predicted, labels, **kwargs)
    matrix = multiclass_confusion_matrix(predicted, labels, num_classes=count).long()
    rows = [
        ClassRow(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(classes, precision, recall, f1, matrix.sum(1), strict=True)
    ]
    off = matrix.clone()
    off.fill_diagonal_(0)
    cells = [(int(off[t, p]), t, p) for t in range(count) for p in range(count) if off[t, p] > 0]
    confusions = [(classes[t], classes[p], n) for n, t, p in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))[:most]]
    return ClassReport(rows, matrix, confusions)


def multi_label_report(
    logits: torch.Tensor, targets: torch.Tensor, classes: list[str], threshold: float = DEFAULT_THRESHOLD
) -> ClassReport:
    """AUROC, average precision and precision, recall and F1 at ``threshold`` of every class (torchmetrics')."""
    from torchmetrics.functional.classification import (
        multilabel_auroc,
        multilabel_average_precision,
        multilabel_f1_score,
        multilabel_precision,
        multilabel_recall,
    )

    probabilities, truth = torch.sigmoid(logits.float()), targets.round().long()
    count = len(classes)
    positives = truth.sum(0)
    ranked = (positives > 0) & (positives < len(truth))  # AUROC and AP need both kinds of sample
    with warnings.catch_warnings():  # classes without positives or negatives are left out below, not warned about
        warnings.simplefilter("ignore", UserWarning)
        auroc = multilabel_auroc(probabilities, truth, num_labels=count, average=None, thresholds=None)
        precision_at = multilabel_average_precision(
            probabilities, truth, num_labels=count, average=None, thresholds=None
        )
    # Thresholded here, not by torchmetrics (which predicts above the threshold): "at least" is the tool's one rule,
    # the one its exact-match error uses too (train/engine.py).
    predicted = (probabilities >= threshold).long()
    kwargs: dict[str, Any] = {"num_labels": count, "average": None}
    precision = multilabel_precision(predicted, truth, **kwargs)
    recall = multilabel_recall(predicted, truth, **kwargs)
    f1 = multilabel_f1_score(predicted, truth, **kwargs)
    rows = []
    for index, name in enumerate(classes):
        kept = bool(ranked[index])
        rows.append(
            ClassRow(
                name,
                float(precision[index]),
                float(recall[index]),
                float(f1[index]),
                int(positives[index]),
                float(auroc[index]) if kept else None,
                float(precision_at[index]) if kept else None,
            )
        )
    return ClassReport(rows)


def multi_label_summary(report: ClassReport) -> dict[str, Any]:
    """The epoch record's multi-label figures: mean AUROC and mean average precision over the classes that have
    both positives and negatives, macro F1 over all classes, and every class's AUROC by name."""
    ranked = [row for row in report.rows if row.auroc is not None]
    return {
        "auroc": sum(row.auroc or 0.0 for row in ranked) / len(ranked) if ranked else float("nan"),
        "map": sum(row.average_precision or 0.0 for row in ranked) / len(ranked) if ranked else float("nan"),
        "f1": sum(row.f1 for row in report.rows) / max(len(report.rows), 1),
        "auroc_by_class": {row.name: row.auroc for row in report.rows},
    }
