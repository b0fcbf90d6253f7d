"""The documentation's pictures, from small real runs on the committed CIFAR-10 slice (``make docs`` runs it).

One training run (DenseNet-BC L=40, 2 Ray workers, 6 epochs) gives the terminal as it looked in the middle of an epoch
(the epoch lines and the progress bar, an SVG of rich's own rendering), the dashboard at that moment (its storage
view), the training curves (``densenet-ray plot``) and the confusion matrix (``densenet-ray evaluate --per-class
--plot``). A two-epoch ``tune wide`` sweep gives the Pareto plot (``densenet-ray tune show --plot``) and the
dashboard of the finished run and sweep. Every picture is written whole or not at all, so an interrupted run leaves
the old ones as they were.

    python docs/pictures.py --out docs/content/pictures        # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from densenet_ray.train.run.directory import ProgressRecord

REPOSITORY = Path(__file__).resolve().parents[1]
SLICE = REPOSITORY / "tests" / "fixtures" / "cifar10-train-slice.tar"
WIDTH = 118  # terminal columns of the captures
IN_EPOCH_LINE = re.compile(r"epoch \d+ \[\d+/\d+\]: ")


def build_shards(work: Path) -> str:
    """The slice as shards, with 10 images a class held out for testing, as a user would build it."""
    from densenet_ray.cli import main as cli

    shards = str(work / "shards")
    build = ["data", "build", "imagefolder", "--source", str(SLICE), "--out", shards, "--shard-size", "50"]
    if cli([*build, "--holdout-per-class", "10"]) != 0:
        raise SystemExit("building the slice's shards failed")
    return shards


class MidEpochCapture:
    """Watches a running run's ``progress.json`` and, once an epoch past the first is half done, keeps what a
    terminal showed then (the printed lines and the bar) and the dashboard's snapshot of the same moment."""

    def __init__(self, run_url: str, storage: str, lines: list[str]) -> None:
        self.run_url, self.storage, self.lines = run_url, storage, lines
        self.terminal: Console | None = None
        self.dashboard: Console | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        from densenet_ray.train.run.directory import RunDirectory

        while not self.stop.wait(0.2):
            try:
                report = RunDirectory(self.run_url).progress()
            except Exception:  # noqa: BLE001 - not written yet
                continue
            shown = any(line.startswith(f"epoch {report.epoch - 1}/") for line in self.lines) if report else False
            if report and report.epoch >= 3 and report.images_per_s and report.batch >= report.batches // 3 and shown:
                self.terminal = terminal_capture(self.lines, report)
                self.dashboard = dashboard_capture([self.storage])
                return


def recording_console() -> Console:
    from rich.console import Console

    return Console(record=True, file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="truecolor")


def terminal_capture(lines: list[str], report: ProgressRecord) -> Console:
    """The lines printed so far with the progress bar under them, drawn by the driver's own ``BarDisplay``."""
    from densenet_ray.train.progress.bar import BarDisplay

    console = recording_console()
    for line in lines:
        if not IN_EPOCH_LINE.match(line):  # off a terminal the driver prints these; in one, the bar shows them
            console.print(line, markup=False, highlight=False)
    display = BarDisplay(recording_console())  # its live region is not recorded; its renderable is, below
    display.progress(report)
    console.print(display.bar.get_renderable())
    display.close()
    return console


def dashboard_capture(roots: list[str]) -> Console:
    """``densenet-ray dashboard --once --no-cluster --storage ROOT...`` as a terminal shows it."""
    from densenet_ray.dashboard.poll import Poller
    from densenet_ray.dashboard.render import render

    snapshot = Poller(None, roots, note="storage only (--no-cluster)").poll()
    console = recording_console()
    console.print(render(snapshot, limit=6))
    return console


def train(shards: str, runs: str, lines: list[str]) -> tuple[str, MidEpochCapture]:
    import densenet_ray as dr

    config = dr.TrainConfig(
        data=shards,
        depth=40,
        epochs=6,
        workers=2,
        batch_size=8,
        loader_workers=1,
        lr_schedule="cosine",
        storage=runs,
        name="bc40-slice",
    )
    capture = MidEpochCapture(f"{runs}/bc40-slice", runs, lines)
    capture.thread.start()
    result = dr.fit(config, local=True, print_line=lines.append)
    capture.stop.set()
    capture.thread.join()
    return result.run_dir, capture


def save_svg(console: Console, path: Path, title: str) -> None:
    temporary = path.with_suffix(".tmp")
    console.save_svg(str(temporary), title=title)
    os.replace(temporary, path)


def run_cli(arguments: list[str]) -> None:
    """A ``densenet-ray`` command (its pictures are written whole or not at all, as every plot of the CLI is)."""
    from densenet_ray.cli import main as cli

    if cli(arguments) != 0:
        raise SystemExit(f"densenet-ray {' '.join(arguments)} failed")


def sweep(shards: str, sweeps: str) -> None:
    import densenet_ray as dr

    options = {"epochs": 2, "batch_size": 16, "limit_train_batches": 10, "limit_eval_batches": 4, "loader_workers": 0}
    dr.sweep("wide", name="wide", data=shards, storage=sweeps, local=True, print_line=None, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "content" / "pictures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="densenet-ray-pictures-") as work:
        shards, runs, sweeps, lines = build_shards(Path(work)), f"{work}/runs", f"{work}/sweeps", []
        run_dir, capture = train(shards, runs, lines)
        if capture.terminal is None or capture.dashboard is None:
            raise SystemExit("the run ended before an epoch could be captured half done")
        save_svg(capture.terminal, args.out / "progress.svg", "densenet-ray train")
        save_svg(capture.dashboard, args.out / "dashboard.svg", "densenet-ray dashboard")
        run_cli(["plot", run_dir, "--out", str(args.out / "curves.png")])
        evaluate = ["evaluate", run_dir, "--per-class", "--plot", str(args.out / "confusion.png")]
        run_cli(evaluate)
        sweep(shards, sweeps)
        show = ["tune", "show", "wide", "--storage", sweeps, "--plot", str(args.out / "pareto.png")]
        run_cli(show)
        save_svg(dashboard_capture([runs, sweeps]), args.out / "dashboard-sweep.svg", "densenet-ray dashboard")
    print(f"pictures in {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
