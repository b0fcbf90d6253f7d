"""An HTTP server on 127.0.0.1 for tests that need one (a download source, a recording endpoint, a dashboard)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serving(handler: Callable[..., BaseHTTPRequestHandler] | type[BaseHTTPRequestHandler]) -> Iterator[Any]:
    """``handler`` served on 127.0.0.1 at a free port from a daemon thread; yields the server (its port in
    ``server_address[1]``), shut down and closed on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
