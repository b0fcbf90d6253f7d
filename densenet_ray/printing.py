"""How the package reports progress to its user: one line at a time, through a callable its caller chooses
(``print`` by default; the command line passes its rich console's ``print``)."""

from __future__ import annotations

from collections.abc import Callable

PrintLine = Callable[[str], None]
