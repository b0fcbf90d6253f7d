"""How a benchmark publishes its report: printed, and written atomically to ``--out`` when given."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def publish(report: dict[str, Any], out: Path | None) -> None:
    """Print ``report`` as JSON and, with ``out``, write it there whole (a temporary file renamed into place)."""
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(out.name + ".tmp")
        temporary.write_text(text + "\n")
        os.replace(temporary, out)
