"""Figures: matplotlib from the ``plot`` extra, drawn off-screen and saved atomically (``--plot``, ``plot``)."""

from __future__ import annotations

from typing import Any

from densenet_ray.errors import UserError
from densenet_ray.paths import atomic_path


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
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=dpi)
