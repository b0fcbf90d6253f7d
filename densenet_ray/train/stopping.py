"""When a run ends before ``--epochs``: ``--early-stop METRIC:PATIENCE`` (the metric has not improved for PATIENCE
epochs) and ``--stop-at-error X`` (the test error reached X).

The decision reads only the checkpointed best of each figure (:func:`update_bests`, saved with the position), so a
resumed run decides as the first attempt would have, and every rank decides alike (the figures are all-reduced).
A run that stopped and is started again with the same name stops at once, unless its options now let it go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from densenet_ray.errors import UserError
from densenet_ray.train.run.record_shapes import TOP5_CLASSES, EpochRecord

# The epoch record's evaluated figures a run can stop on, and which way is better; the suffix says (errors and
# losses fall, AUROC, average precision and F1 rise). Only the test figures: they are summed over all ranks, so every
# rank decides alike (the training loss and error are each rank's own).
_LOWER_IS_BETTER = ("loss", "error")
_HIGHER_IS_BETTER = ("auroc", "map", "f1")
STOP_METRICS: dict[str, str] = {
    item.name: "min" if item.name.endswith(_LOWER_IS_BETTER) else "max"
    for item in dataclasses.fields(EpochRecord)
    if item.name.endswith(_LOWER_IS_BETTER + _HIGHER_IS_BETTER) and item.name.startswith(("test_", "ema_test_"))
}
MULTI_LABEL_ONLY = tuple(name for name in STOP_METRICS if name.endswith(_HIGHER_IS_BETTER))
SINGLE_LABEL_ONLY = tuple(name for name in STOP_METRICS if "top5" in name)

Bests = dict[str, tuple[float, int]]  # figure -> (its best value, the 1-indexed epoch it came in)


@dataclass(frozen=True)
class EarlyStop:
    """``--early-stop METRIC:PATIENCE``: stop once ``metric`` has gone ``patience`` epochs without improving."""

    metric: str
    patience: int


def parse_early_stop(text: str) -> EarlyStop:
    """``"test_error:10"`` as an :class:`EarlyStop`; a one-line :class:`UserError` naming what is wrong."""
    metric, colon, patience = text.strip().rpartition(":")
    if not colon or not metric:
        raise UserError(f"--early-stop {text!r} must be METRIC:PATIENCE, e.g. test_error:10")
    if metric not in STOP_METRICS:
        raise UserError(
            f"--early-stop {text!r}: {metric!r} is not a test figure of the epoch record; use one of: "
            f"{', '.join(STOP_METRICS)}"
        )
    if not patience.strip().isdigit() or int(patience) < 1:
        raise UserError(f"--early-stop {text!r}: PATIENCE must be a whole number of epochs, at least 1")
    return EarlyStop(metric, int(patience))


def check_stopping(early_stop: str, ema: bool, multi_label: bool | None = None, classes: int | None = None) -> None:
    """``--early-stop`` names a figure this run's records will carry: ``ema_*`` needs ``--ema``; AUROC, mAP and F1
    are multi-label figures and top-5 a single-label one of more than 5 classes (``multi_label`` and ``classes``
    None: not known yet)."""
    if not early_stop:
        return
    metric = parse_early_stop(early_stop).metric
    if metric.startswith("ema_") and not ema:
        raise UserError(f"--early-stop {early_stop!r}: {metric} is recorded with --ema only")
    if multi_label is False and metric in MULTI_LABEL_ONLY:
        raise UserError(f"--early-stop {early_stop!r}: {metric} is a multi-label figure; use test_error or test_loss")
    if multi_label and metric in SINGLE_LABEL_ONLY:
        raise UserError(f"--early-stop {early_stop!r}: multi-label runs have no top-5 error; use test_auroc")
    if classes is not None and classes <= TOP5_CLASSES and metric in SINGLE_LABEL_ONLY:
        raise UserError(
            f"--early-stop {early_stop!r}: top-5 error is recorded for more than {TOP5_CLASSES} classes and this data "
            f"has {classes}; use test_error"
        )


def update_bests(bests: Bests, record: Mapping[str, Any]) -> Bests:
    """``bests`` with the figures of one epoch ``record`` that improved on them (strictly: a tie is no progress)."""
    updated = dict(bests)
    for metric, direction in STOP_METRICS.items():
        value = record.get(metric)
        if value is None:
            continue
        best = updated.get(metric)
        if best is None or (value < best[0] if direction == "min" else value > best[0]):
            updated[metric] = (float(value), int(record["epoch"]))
    return updated


def stop_reason(
    early_stop: str, stop_at_error: float | None, bests: Bests, epochs_done: int, limit_epochs: int = 0
) -> str | None:
    """Why the run ends after ``epochs_done`` epochs, or None while it goes on."""
    if limit_epochs and epochs_done >= limit_epochs:
        return f"--limit-epochs {limit_epochs}"
    best_error = bests.get("test_error")
    if stop_at_error is not None and best_error is not None and best_error[0] <= stop_at_error:
        return f"test_error {best_error[0]:.4f} at epoch {best_error[1]} reached --stop-at-error {stop_at_error:g}"
    if early_stop:
        rule = parse_early_stop(early_stop)
        best = bests.get(rule.metric)
        if best is not None and epochs_done - best[1] >= rule.patience:
            return (
                f"{rule.metric} has not improved for {epochs_done - best[1]} epoch(s) (best {best[0]:.4f} at epoch "
                f"{best[1]}; --early-stop {early_stop})"
            )
    return None
