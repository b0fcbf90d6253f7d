"""The console every command prints through."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console


def make_console(**options: Any) -> Console:
    """A rich console; piped or logged output (``ray job logs``, CI) gets 160 columns instead of rich's default 80,
    so tables and paths stay whole. ``options`` go to rich's ``Console`` (``force_terminal``, ``no_color``)."""
    return Console(**options) if sys.stdout.isatty() else Console(width=160, **options)
