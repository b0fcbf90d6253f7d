"""MkDocs hooks for the API pages: the package's docstrings are written in reStructuredText's inline style
(``:class:`Name```, ``~module.Name``, a literal block after ``::``), which mkdocstrings shows as it is; these turn
the roles into plain code, ``~module.Name`` into ``Name`` and the ``::`` into a colon in the built HTML."""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):(<code>)")
SHORTENED = re.compile(r"<code>~(?:\w+\.)+(\w+)</code>")  # ``~a.b.Name`` shows as ``Name``, as in Sphinx
LITERAL_BLOCK_LEAD = re.compile(r"::</p>")


def on_page_content(html: str, **_: Any) -> str:
    """The page's HTML with reStructuredText roles and literal-block colons made plain."""
    return SHORTENED.sub(r"<code>\1</code>", LITERAL_BLOCK_LEAD.sub(":</p>", ROLE.sub(r"\1", html)))
