"""A sweep's result table, read from storage alone (no Ray): one row per trial, ratios to the baseline, Pareto fronts.

Every trial is a training run under ``<experiment>/trials/<trial>/`` with its ``config.yaml`` and
``metrics.jsonl``; that is all this module reads, so ``tune show`` works on finished and running sweeps alike, from
a laptop. The finished table is saved beside the experiment as ``results.json`` and ``results.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from densenet_ray.data.storage import Storage, StorageError, child_url, open_storage
from densenet_ray.plotting import pyplot, save_figure
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.run.directory import CONFIG_FILE, RunDirectory

TRIALS_DIR = "trials"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
SWEEP_FILE = "sweep.json"  # what was asked for: kind, baseline, options; written when the sweep starts


@dataclass
class TrialRow:
    """One trial's figures (errors are fractions; ``None`` until the trial has finished an epoch)."""

    trial: str
    label: str
    options: dict[str, Any]
    params: int
    epochs_done: int
    epochs: int
    final_test_error: float | None = None
    best_test_error: float | None = None
    seconds_per_iteration: float | None = None
    peak_memory_mb: float | None = None
    images_per_s: float | None = None
    status: str = "running"
    ratios: dict[str, float] = field(default_factory=dict)
    pareto_time: bool = False
    pareto_memory: bool = False
    cause: str = ""  # a failed trial's one-line error
    multi_label: bool = False  # its errors are 1 - mean AUROC, shown as AUROC


RATIO_KEYS = ("params", "final_test_error", "seconds_per_iteration", "peak_memory_mb", "images_per_s")


def _params(config: ResolvedConfig) -> int:
    from densenet_ray.models import profile_model, resolve_config

    return profile_model(resolve_config(config.options.model, **config.model_kwargs())).params


def read_trial(storage: Storage, trial: str, searched: list[str] | None = None) -> TrialRow | None:
    """The row of the training run ``trial`` under the trials directory; None before its config is written."""
    from densenet_ray.tune.sweeps import trial_label

    saved = RunDirectory(storage.join(trial)).read()
    if saved is None:
        return None
    options, records = saved.config.options, saved.epochs
    assert options.epochs is not None, "read_config_document refuses a configuration without epochs"
    row = TrialRow(
        trial=trial,
        label=trial_label(options, searched),
        options=options.to_dict(),
        params=_params(saved.config),
        epochs_done=records[-1].epoch if records else 0,
        epochs=options.epochs,
    )
    if records:
        last = records[-1]
        row.final_test_error, row.best_test_error = last.test_error, last.best_test_error
        row.multi_label = last.test_auroc is not None
        # Time and memory: the median over epochs (the first epoch carries start-up costs; later ones are steady).
        row.seconds_per_iteration = _median([r.seconds_per_iteration or 0.0 for r in records])
        row.peak_memory_mb = max(r.peak_memory_mb or 0.0 for r in records)
        row.images_per_s = _median([r.steady_images_per_s or r.images_per_s or 0.0 for r in records])
        row.status = "complete" if row.epochs_done >= row.epochs else "running"
    return row


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (error, cost) pairs, whether each is on the front: no other point is at most as bad in both and strictly
    better in one."""
    return [not any(e <= error and c <= cost and (e < error or c < cost) for e, c in points) for error, cost in points]


def finish_rows(rows: list[TrialRow], baseline: dict[str, Any] | None) -> list[TrialRow]:
    """Fill in the ratios to the baseline row (the first row when no baseline is named or it is absent) and the
    Pareto fronts of error vs time and error vs memory, over the rows that have figures."""
    measured = [row for row in rows if row.final_test_error is not None]
    if not measured:
        return rows
    reference = measured[0]
    if baseline:
        reference = next((row for row in measured if _matches(row.options, baseline)), reference)
    for row in measured:
        for key in RATIO_KEYS:
            mine, theirs = getattr(row, key), getattr(reference, key)
            if mine is not None and theirs:
                row.ratios[key] = mine / theirs
    errors = [row.final_test_error or 0.0 for row in measured]
    for flags, cost in (("pareto_time", "seconds_per_iteration"), ("pareto_memory", "peak_memory_mb")):
        front = pareto_front([(error, getattr(row, cost) or 0.0) for error, row in zip(errors, measured, strict=True)])
        for row, on_front in zip(measured, front, strict=True):
            setattr(row, flags, on_front)
    return rows


def _matches(options: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a row's options (a trial's, saved as :meth:`TrainConfig.to_dict`) train the model ``wanted`` names."""
    from densenet_ray.tune.sweeps import describe

    return describe(TrainConfig.from_sources(options, {})) == describe(TrainConfig.from_sources(wanted, {}))


def collect(
    experiment_url: str, baseline: dict[str, Any] | None = None, searched: list[str] | None = None
) -> list[TrialRow]:
    """Every trial's row under ``experiment_url``, sorted by parameter count, with ratios and fronts."""
    trials = open_storage(child_url(experiment_url, TRIALS_DIR))
    names = sorted({info.name.split("/", 1)[0] for info in trials.list() if info.name.endswith("/" + CONFIG_FILE)})
    rows = [row for row in (read_trial(trials, name, searched) for name in names) if row is not None]
    rows.sort(key=lambda row: (row.params, row.label, row.trial))
    return finish_rows(rows, baseline)


def to_csv(rows: list[TrialRow]) -> str:
    """The table as CSV: one line per trial, ratios as ``<key>_ratio`` columns."""
    out = io.StringIO()
    columns = ["label", "params", "final_test_error", "best_test_error", "seconds_per_iteration", "peak_memory_mb"]
    columns += ["images_per_s", *(f"{key}_ratio" for key in RATIO_KEYS), "pareto_time", "pareto_memory"]
    columns += ["epochs_done", "epochs", "status", "trial"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = {key: value for key, value in asdict(row).items() if key in columns}
        values.update({f"{key}_ratio": row.ratios.get(key) for key in RATIO_KEYS})
        writer.writerow(values)
    return out.getvalue()


def save(experiment_url: str, rows: list[TrialRow], summary: dict[str, Any]) -> None:
    """Write ``results.json`` and ``results.csv`` beside the experiment (each atomically)."""
    storage = open_storage(experiment_url)
    document = {**summary, "rows": [asdict(row) for row in rows]}
    storage.write_bytes(RESULTS_JSON, json.dumps(document, indent=2, default=float).encode())
    storage.write_bytes(RESULTS_CSV, to_csv(rows).encode())


def load_saved(experiment_url: str) -> tuple[dict[str, Any], list[TrialRow]] | None:
    """The saved ``results.json`` as (summary, rows), or None when the sweep has not finished."""
    storage = open_storage(experiment_url)
    try:
        if not storage.exists(RESULTS_JSON):
            return None
        document = json.loads(storage.read_bytes(RESULTS_JSON))
    except (StorageError, ValueError):
        return None
    rows = [TrialRow(**row) for row in document.pop("rows")]
    return document, rows


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals, or ``-``."""
    return "-" if value is None else f"{100 * value:.2f}"


def error_text(value: float | None, multi_label: bool) -> str:
    """A run's error as tables show it: a percentage, or for a multi-label run (whose error is 1 - mean AUROC) its
    mean AUROC, ``AUROC 0.812``."""
    if value is None or not multi_label:
        return percent(value)
    return f"AUROC {1 - value:.3f}"


def _ratio(row: TrialRow, key: str) -> str:
    return f"{row.ratios[key]:.2f}x" if key in row.ratios else "-"


def render(rows: list[TrialRow], title: str) -> Any:
    """A rich table of model, params, error, s/iter and memory plus ratios and fronts."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("model", "params", "test error %", "best %", "s/iter", "memory MB", "images/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for column in ("params x", "error x", "s/iter x", "memory x", "Pareto", "epochs"):
        table.add_column(column, justify="right")
    for row in rows:
        fronts = "/".join(name for name, on in (("time", row.pareto_time), ("memory", row.pareto_memory)) if on)
        table.add_row(
            row.label,
            f"{row.params:,}",
            error_text(row.final_test_error, row.multi_label),
            error_text(row.best_test_error, row.multi_label),
            "-" if row.seconds_per_iteration is None else f"{row.seconds_per_iteration:.3f}",
            "-" if row.peak_memory_mb is None else f"{row.peak_memory_mb:.0f}",
            "-" if row.images_per_s is None else f"{row.images_per_s:.1f}",
            _ratio(row, "params"),
            _ratio(row, "final_test_error"),
            _ratio(row, "seconds_per_iteration"),
            _ratio(row, "peak_memory_mb"),
            fronts or "-",
            f"{row.epochs_done}/{row.epochs}" + ("" if row.status in ("complete", "running") else f" {row.status}"),
        )
    return table


def plot(rows: list[TrialRow], path: str, title: str) -> None:
    """Error vs time and error vs memory, Pareto fronts marked, to ``path`` (needs the ``plot`` extra)."""
    plt = pyplot("--plot")
    measured = [row for row in rows if row.final_test_error is not None]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, cost, flag, label in (
        (axes[0], "seconds_per_iteration", "pareto_time", "seconds per iteration"),
        (axes[1], "peak_memory_mb", "pareto_memory", "peak memory (MB)"),
    ):
        xs = [getattr(row, cost) for row in measured]
        ys = [100 * (row.final_test_error or 0.0) for row in measured]
        axis.scatter(xs, ys, color="tab:blue")
        front = sorted((x, y) for x, y, row in zip(xs, ys, measured, strict=True) if getattr(row, flag))
        if front:
            axis.plot(*zip(*front, strict=True), color="tab:red", marker="o", label="Pareto front")
            axis.legend()
        # labels alternate above and below in the order of x, so neighbours at one error do not overwrite each other
        for place, (x, y, row) in enumerate(sorted(zip(xs, ys, measured, strict=True), key=lambda point: point[0])):
            offset = (4, 5) if place % 2 == 0 else (4, -12)
            axis.annotate(row.label, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        axis.margins(x=0.12, y=0.15)  # room for the labels of the points at the edges
        axis.set_xlabel(label)
        axis.set_ylabel("test error (%)")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def summary_text(rows: list[TrialRow]) -> str:
    """One line naming the Pareto-optimal models."""
    time_front = ", ".join(row.label for row in rows if row.pareto_time) or "-"
    memory_front = ", ".join(row.label for row in rows if row.pareto_memory) or "-"
    return f"Pareto front, error vs time: {time_front}; error vs memory: {memory_front}"


def read_sweep(experiment_url: str) -> dict[str, Any]:
    """The sweep's own description (``sweep.json``), or an empty dict."""
    storage = open_storage(experiment_url)
    try:
        return json.loads(storage.read_bytes(SWEEP_FILE)) if storage.exists(SWEEP_FILE) else {}
    except (StorageError, ValueError):
        return {}
