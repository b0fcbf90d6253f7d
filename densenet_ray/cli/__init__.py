"""The ``densenet-ray`` command line: nested command groups, one module per group."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from densenet_ray.cli import cluster, dashboard, data, evaluate, export, models, plot, predict, train, tune
from densenet_ray.data.storage import StorageError
from densenet_ray.errors import DataError, RunFailed, UserError
from densenet_ray.version import __version__

# Printed as one line with exit code 1. Anything else is a bug and keeps its traceback.
ONE_LINE_ERRORS = (UserError, StorageError, DataError, RunFailed)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``densenet-ray`` parser; each command group adds its own subcommands."""
    parser = _Parser(prog="densenet-ray", description="Train DenseNets at cluster scale on Ray.")
    parser.add_argument("--version", action="version", version=f"densenet-ray {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    models.add_parser(groups)
    data.add_parser(groups)
    train.add_parser(groups)
    evaluate.add_parser(groups)
    export.add_parser(groups)
    predict.add_parser(groups)
    plot.add_parser(groups)
    tune.add_parser(groups)
    cluster.add_parser(groups)
    dashboard.add_parser(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 success, 1 failure or bad input, 2 usage error).
    ``DENSENET_RAY_DEBUG=1`` shows the traceback of one-line errors too."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ONE_LINE_ERRORS as error:
        if os.environ.get("DENSENET_RAY_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupted:  # Ctrl+C; a run or sweep says where its saved state is
        print(str(interrupted) or "interrupted", file=sys.stderr)
        return 130
