"""A real MLflow tracking server that asks for a password, for a run whose ``MLFLOW_TRACKING_URI`` carries one:
MLflow's own server application (``mlflow.server.app``) over a SQLite database, served by werkzeug in a process of
its own behind HTTP Basic authentication, so a client that connects without the password is refused (401).

A SQLite or file URI cannot carry a password; an HTTP server's URI can (``http://user:password@host:port``)."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator

CREDENTIALS = "TEST_MLFLOW_SERVER_CREDENTIALS"  # user:password, read once by the server and removed


@contextlib.contextmanager
def mlflow_server(store_uri: str, artifacts: str, user: str, password: str) -> Iterator[str]:
    """A server over ``store_uri`` for the block; yields its URL with ``user:password`` in it. Stopped by its pid."""
    env = {**os.environ, CREDENTIALS: f"{user}:{password}"}
    command = [sys.executable, __file__, store_uri, artifacts]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        port = (server.stdout.readline() if server.stdout else "").strip()
        assert port.isdigit(), f"the MLflow server did not start (exit code {server.poll()})"
        yield f"http://{user}:{password}@127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _serve(store_uri: str, artifacts: str) -> None:
    """Listen first and say where, then load MLflow's application (seconds) while the run starts; requests wait in
    the socket's backlog until it serves."""
    from werkzeug.serving import make_server

    expected = "Basic " + base64.b64encode(os.environ.pop(CREDENTIALS).encode()).decode()
    loaded: dict[str, Callable] = {}

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"credentials required"]
        return loaded["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, guarded, threaded=True)
    print(server.server_port, flush=True)
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = store_uri  # what `mlflow server` hands its application
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = artifacts
    from mlflow.server import app

    loaded["app"] = app
    server.serve_forever()


if __name__ == "__main__":
    _serve(*sys.argv[1:3])
