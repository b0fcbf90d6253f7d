"""Figures: matplotlib from the ``plot`` extra, drawn off-screen and saved atomically (``--plot``, ``plot``)."""

from __future__ import annotations

import os
from typing import Any

from densenet_ray.errors import UserError


def pyplot(flag: str) -> Any:
    """``matplotlib.pyplot`` on the off-screen Agg backend; a one-line error naming the extra when it is missing
    (``flag`` names what needed it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"{flag} needs matplotlib: pip install 'densenet-ray[plot]'") from None
    return plt


def save_figure(figure: Any, path: str, dpi: int = 120) -> None:
    """Write ``figure`` to ``path`` whole or not at all (the format follows the extension: .png, .pdf, .svg)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"cannot write {path}: the folder {directory} does not exist")
    base, extension = os.path.splitext(path)
    partial = f"{base}.partial-{os.getpid()}{extension or '.png'}"
    try:
        figure.savefig(partial, dpi=dpi)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
