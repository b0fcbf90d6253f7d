"""The Ray dashboard's HTTP API, read with the standard library: jobs, nodes, cluster status and Ray Train V2 runs.

Token auth (on by default for Ray 2.60 local clusters) is a ``Authorization: Bearer`` header. This machine's token
file goes only to a dashboard on this machine's loopback unless the user says otherwise (:func:`auth_token`). Every
failure becomes a :class:`ClusterError` with one line naming the address and what to do; the token never appears
in it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

TRAIN_RUNS = "/api/train/v2/runs/v1"  # the Train V2 API; /api/train/v2/runs is V1's and has no V2 runs
TRAIN_STATE_OFF = "Train state data is not available"
SEND_TOKEN_FLAG = "--send-token"  # the dashboard command's flag that sends the token file to any address


class ClusterError(Exception):
    """The cluster could not be read; the message is one line."""


def token_path() -> Path:
    """Where Ray keeps the cluster token on this machine: ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a URL's or a ``HOST:PORT``'s host, IPv6 without brackets) is this machine's loopback:
    ``localhost``, 127.0.0.0/8 or ::1 (also IPv4-mapped). Other names are not resolved: they may point anywhere."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def auth_token(address: str, send_token: bool = False) -> tuple[str | None, str]:
    """The token to send to the dashboard at ``address`` and where it came from, or ``(None, "")``.

    ``RAY_AUTH_TOKEN`` is sent to any address: setting it is the user naming the token for the cluster at hand.
    The token file (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``, as Ray's clients read it) is this machine's
    and goes only to a loopback address, which an SSH tunnel or ``kubectl port-forward`` also is, unless
    ``send_token`` (the user's ``--send-token``) says to send it further. ``RAY_AUTH_MODE=disabled`` sends none."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None, ""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    if not (send_token or is_loopback(urlparse(address).hostname)):
        return None, ""
    path = token_path()
    try:
        token = path.read_text().strip()
    except OSError:
        return None, ""
    return (token or None), str(path)


class DashboardClient:
    """GETs JSON from one Ray dashboard (``http://host:8265``); ``send_token``: see :func:`auth_token`."""

    def __init__(self, address: str, timeout: float = 15.0, send_token: bool = False) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.token, self.token_source = auth_token(self.address, send_token)
        self.token_withheld = not (send_token or is_loopback(urlparse(self.address).hostname))

    def get(self, path: str) -> Any:
        """The decoded JSON at ``path``; raises :class:`ClusterError` on any failure."""
        request = urllib.request.Request(self.address + path, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise ClusterError(self._http_message(error, path)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClusterError(f"cannot reach the Ray dashboard at {self.address} ({reason})") from None
        try:
            return json.loads(body)
        except ValueError:
            raise ClusterError(f"{self.address}{path} did not answer with JSON: is it a Ray dashboard?") from None

    def _http_message(self, error: urllib.error.HTTPError, path: str) -> str:
        if error.code in (401, 403):
            if self.token:
                return (
                    f"the Ray dashboard at {self.address} rejected the token from {self.token_source} "
                    f"(HTTP {error.code}); use the cluster's token (`ray get-auth-token` on the head)"
                )
            return self._missing_token_message(error.code)
        detail = ""
        with contextlib.suppress(OSError):
            detail = " ".join(error.read().decode(errors="replace").split())[:200]
        return f"{self.address}{path} answered HTTP {error.code}" + (f": {detail}" if detail else "")

    def _missing_token_message(self, code: int) -> str:
        """Why no token went with the request, and how to send one."""
        needs = f"the Ray dashboard at {self.address} needs a token (HTTP {code})"
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            return f"{needs}: RAY_AUTH_MODE=disabled sends none; unset it, or set it to token"
        if self.token_withheld:
            return (
                f"{needs}; this machine's token file ({token_path()}) goes only to a loopback address (127.0.0.1, "
                f"localhost): pass {SEND_TOKEN_FLAG} to send it to this one, or set RAY_AUTH_TOKEN to its token"
            )
        return (
            f"{needs}: put the cluster's token in {token_path()} (`ray get-auth-token` prints it where the cluster "
            "was started), or set RAY_AUTH_TOKEN"
        )

    def version(self) -> dict[str, Any]:
        return self.get("/api/version")

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.get("/api/jobs/"))

    def nodes(self) -> list[dict[str, Any]]:
        document = self.get("/api/v0/nodes?limit=10000&detail=false")
        return list(((document.get("data") or {}).get("result") or {}).get("result") or [])

    def cluster_status(self) -> dict[str, Any] | None:
        try:
            return (self.get("/api/cluster_status").get("data")) or None
        except ClusterError:
            return None  # the autoscaler's report is optional; node totals still come from the state API

    def train_runs(self) -> list[dict[str, Any]] | None:
        """Train V2 runs, newest first; None when the cluster does not record them (state tracking off, or no run
        has started since the cluster did)."""
        try:
            return list(self.get(TRAIN_RUNS).get("train_runs") or [])
        except ClusterError as error:
            if TRAIN_STATE_OFF in str(error) or "HTTP 404" in str(error):
                return None
            raise
