"""The console every command prints through."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    """A rich console; piped or logged output (``ray job logs``, CI) gets 160 columns instead of rich's default 80,
    so tables and paths stay whole."""
    return Console() if sys.stdout.isatty() else Console(width=160)
