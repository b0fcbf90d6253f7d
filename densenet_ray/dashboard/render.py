"""Drawing a :class:`~densenet_ray.dashboard.snapshot.Snapshot` with rich: a header line, then tables of jobs, training
runs (progress bars, sparklines of loss and test error) and sweeps. The same renderables serve the live view and the
plain snapshot printed off a terminal; nothing here reads a source. Every string that comes from a source (a job's
message, a run's name, a note) is drawn as :func:`plain` text: never parsed as rich markup, its terminal escape
sequences and control characters taken out.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from densenet_ray.dashboard.snapshot import RunRow, Snapshot, SweepRow
from densenet_ray.tune.report import error_text

# ECMA-48 escape sequences: CSI (7- and 8-bit), string commands (OSC titles and links, DCS, APC...) to their end,
# and the short ESC forms. rich's ANSI parser would apply a carriage return's overwrite and keep BEL-ended titles.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, erasing, colours
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"  # the short forms (ESC c resets the terminal)
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (0x9b alone starts a sequence on some terminals)
SPARKS = "▁▂▃▄▅▆▇█"
STATUS_STYLES = {
    "RUNNING": "bold blue",
    "ACTIVE": "bold blue",
    "PENDING": "yellow",
    "SCHEDULING": "yellow",
    "INITIALIZING": "yellow",
    "RESTARTING": "bold yellow",
    "RESIZING": "yellow",
    "SUCCEEDED": "green",
    "FINISHED": "green",
    "FAILED": "bold red",
    "ERRORED": "bold red",
    "ERROR": "bold red",
    "STOPPED": "magenta",
    "ABORTED": "magenta",
    "INTERRUPTED": "magenta",
}


def clean(value: object) -> str:
    """``value`` as text a terminal only prints: escape sequences and other control characters removed, line breaks
    and tabs as spaces."""
    text = _ESCAPES.sub("", str(value))
    return _CONTROL.sub(lambda found: " " if found.group() in "\t\n\r" else "", text)


def plain(value: object, style: str = "") -> Text:
    """``value`` as :func:`clean` text, drawn as it reads (a ``Text``, which rich never parses as markup)."""
    return Text(clean(value), style=style)


def sparkline(values: list[float], width: int = 16) -> str:
    """The last ``width`` values as block characters, lowest to highest (a diverged run's NaN left out)."""
    values = [value for value in values if value is not None and math.isfinite(value)][-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    return "".join(SPARKS[0 if span == 0 else round((value - low) / span * (len(SPARKS) - 1))] for value in values)


def bar(fraction: float, width: int = 12) -> str:
    """A text progress bar with its percentage: ``██████░░░░░░  50%``."""
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled) + f" {100 * fraction:3.0f}%"


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (days as ``Nd H:MM:SS``), or ``-``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def clock(stamp: float | None, now: float | None = None) -> str:
    """Local ``HH:MM:SS`` for a time today, ``MM-DD HH:MM`` for an earlier one."""
    if stamp is None:
        return "-"
    local, today = time.localtime(stamp), time.localtime(now if now is not None else time.time())
    same_day = local[:3] == today[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M", local)


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def status_text(status: str) -> Text:
    return plain(status, STATUS_STYLES.get(status, ""))


def header(snapshot: Snapshot) -> Text:
    """The first line: the cluster (or storage alone), its nodes and load, and the poll's time; notes below it."""
    text = Text("densenet-ray dashboard", style="bold")
    cluster = snapshot.cluster
    if cluster is None:
        text.append(" · storage only")
    else:
        version = f" (Ray {cluster.ray_version})" if cluster.ray_version else ""
        text.append(clean(f" · cluster {cluster.address}{version}"))
        dead = f", {cluster.nodes_dead} dead" if cluster.nodes_dead else ""
        text.append(f" · {cluster.nodes_alive} node{'s' if cluster.nodes_alive != 1 else ''} alive{dead}")
        text.append(f" · CPU {_used(cluster.cpus_used)}/{cluster.cpus_total:g}")
        text.append(f" · GPU {_used(cluster.gpus_used)}/{cluster.gpus_total:g}")
    text.append(f" · {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(snapshot.time))}")
    for note in snapshot.notes:
        text.append(f"\n! {clean(note)}", style="yellow")
    return text


def _used(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


class FitTable:
    """A table that leaves out its least important columns (``drop``, first to go first) until it fits the width it
    is drawn at, instead of squeezing every column into wrapped fragments."""

    def __init__(
        self, columns: tuple[str, ...], rows: list[list[Any]], right: tuple[str, ...] = (), drop: tuple[str, ...] = ()
    ) -> None:
        self.columns, self.rows, self.right, self.drop = columns, rows, right, drop

    def table(self, hidden: set[str]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        keep = [index for index, column in enumerate(self.columns) if column not in hidden]
        for index in keep:
            column = self.columns[index]
            table.add_column(column, justify="right" if column in self.right else "left", no_wrap=column != "message")
        for row in self.rows:  # a string cell would be parsed as markup: each is plain text
            table.add_row(*(plain(row[index]) if isinstance(row[index], str) else row[index] for index in keep))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        hidden: set[str] = set()
        table = self.table(hidden)
        unbounded = options.update_width(100_000)  # rich clamps a measurement to the width it is given
        for column in self.drop:
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
            hidden.add(column)
            table = self.table(hidden)
        yield table


def jobs_table(snapshot: Snapshot, limit: int) -> RenderableType:
    """Submitted jobs, running first then newest; failures with their one-line reason."""
    rows = [
        [
            job.submission_id,
            status_text(job.status),
            job.entrypoint,
            clock(job.start_time, snapshot.time),
            duration(job.duration_s),
            job.message or "",
        ]
        for job in snapshot.jobs[:limit]
    ]
    columns = ("submission id", "status", "entrypoint", "started", "duration", "message")
    table = FitTable(columns, rows, right=("duration",))
    counts = _counts(job.status for job in snapshot.jobs)
    return _section(f"Jobs ({counts or 'none'})", table if rows else None, len(snapshot.jobs) - limit, "jobs")


RUN_COLUMNS = ("run", "model", "status", "epoch", "run progress", "run ETA", "img/s", "loss", "err %", "best %")
CURVE_COLUMNS = ("loss/epoch", "err/epoch")
CLUSTER_COLUMNS = ("restarts", "workers", "job")
ELASTIC_COLUMNS = ("world/epoch", "preempted")  # shown when a run's world size changed or a node was preempted
RUN_DROP_ORDER = ("job", "world/epoch", "restarts", "workers", "loss/epoch", "model", "img/s", "run ETA")


def runs_table(snapshot: Snapshot, limit: int) -> RenderableType:
    """Training runs: progress, speed, latest and best figures, curves per epoch and, from the cluster, restarts,
    workers and the job that started each run."""
    standalone = [run for run in snapshot.runs if run.sweep is None]
    from_cluster = any(run.status_source == "train" for run in standalone)
    elastic = any(run.preemptions or len(set(run.world_sizes)) > 1 for run in standalone[:limit])
    columns = RUN_COLUMNS + CURVE_COLUMNS + (CLUSTER_COLUMNS if from_cluster else ()) + (ELASTIC_COLUMNS * elastic)
    rows = [[cells[column] for column in columns] for cells in map(_run_cells, standalone[:limit])]
    right = ("epoch", "run ETA", "img/s", "loss", "err %", "best %", "restarts", "workers", "preempted")
    counts = _counts(run.status for run in standalone)
    table = FitTable(columns, rows, right=right, drop=RUN_DROP_ORDER)
    section = _section(f"Training runs ({counts or 'none'})", table if rows else None, len(standalone) - limit, "runs")
    stopped = [
        plain(f"{run.name} stopped at epoch {run.epoch}: {run.stopped}", style="dim")
        for run in standalone[:limit]
        if run.stopped
    ]
    return Group(section, *stopped) if stopped else section


def _run_cells(run: RunRow) -> dict[str, Any]:
    """Every column's cell for ``run``."""
    epochs = "?" if run.epochs is None else str(run.epochs)
    best = error_text(run.best_test_error, run.multi_label) + (f" @{run.best_epoch}" if run.best_epoch else "")
    workers = "-" if run.workers is None else f"{run.workers_alive}/{run.workers}"
    changes = [size for index, size in enumerate(run.world_sizes) if index == 0 or size != run.world_sizes[index - 1]]
    cells = [
        run.name,
        run.model or "-",
        status_text(run.status),
        f"{run.epoch}/{epochs}",
        bar(run.progress),
        duration(run.eta_s) if run.status not in ("FINISHED", "STOPPED", "ERRORED", "ABORTED") else "-",
        number(run.images_per_s),
        number(run.loss, 4),
        error_text(run.test_error, run.multi_label),
        best,
        sparkline(run.loss_history),
        sparkline(run.error_history),
        "-" if run.restarts is None else str(run.restarts),
        workers,
        run.job or "-",
        "→".join(map(str, changes)) or "-",
        str(run.preemptions),
    ]
    columns = RUN_COLUMNS + CURVE_COLUMNS + CLUSTER_COLUMNS + ELASTIC_COLUMNS
    return dict(zip(columns, cells, strict=True))


def sweep_table(sweep: SweepRow, limit: int) -> RenderableType:
    """One sweep: its status, trial counts and best trial so far above a row per trial."""
    title = plain(f"Sweep {sweep.name} ({sweep.kind}, {sweep.scheduler}) ", style="bold")
    title.append_text(status_text(sweep.status))
    title.append(clean(f" · {len(sweep.trials)} trials: {_counts(row.status for row in sweep.trials) or 'none yet'}"))
    if sweep.best_label is not None:
        options = ", ".join(f"{key}={value}" for key, value in sweep.best_options.items())
        figure = error_text(sweep.best_test_error, sweep.multi_label)
        what = "" if sweep.multi_label else " % test error"
        title.append("\n" + clean(f"best so far: {sweep.best_label} (trial {sweep.best_trial}) at {figure}{what}"))
        title.append(clean(f", {options}") if options else "")
    rows = [
        [
            trial.trial_id + (" *" if trial.trial_id == sweep.best_trial else ""),
            trial.label,
            status_text(trial.status),
            f"{trial.epoch}/{'?' if trial.epochs is None else trial.epochs}",
            error_text(trial.test_error, trial.multi_label),
            error_text(trial.best_test_error, trial.multi_label),
        ]
        for trial in sweep.trials[:limit]
    ]
    columns = ("trial", "model / options", "status", "epoch", "err %", "best %")
    table = FitTable(columns, rows, right=("epoch", "err %", "best %"))
    return _section(title, table if rows else None, len(sweep.trials) - limit, "trials")


def _section(title: str | Text, table: FitTable | None, hidden: int, what: str) -> RenderableType:
    heading = plain(title, style="bold") if isinstance(title, str) else title
    parts: list[RenderableType] = [heading] if table is None else [heading, table]
    if hidden > 0:
        parts.append(Text(f"… {hidden} more {what} (--limit N to show more, --json for all)", style="dim"))
    return Group(*parts)


def _counts(statuses: Any) -> str:
    found: dict[str, int] = {}
    for status in statuses:
        found[status] = found.get(status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in found.items())


def render(snapshot: Snapshot, limit: int = 10) -> RenderableType:
    """The whole snapshot: header, then the jobs (when there is a cluster), runs and sweeps."""
    parts: list[RenderableType] = [header(snapshot)]
    if snapshot.cluster is not None:
        parts += [Text(""), jobs_table(snapshot, limit)]
    parts += [Text(""), runs_table(snapshot, limit)]
    for sweep in snapshot.sweeps[:limit]:
        parts += [Text(""), sweep_table(sweep, limit)]
    if len(snapshot.sweeps) > limit:
        parts.append(Text(f"… and {len(snapshot.sweeps) - limit} more sweeps (--limit, or --json for all)"))
    return Group(*parts)
