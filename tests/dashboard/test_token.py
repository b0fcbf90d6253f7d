"""Where the dashboard sends this machine's Ray token: to a dashboard on the loopback, elsewhere only when the user
says so (``--send-token``, or ``RAY_AUTH_TOKEN``). A real HTTP server on 127.0.0.1 records what arrives; a dashboard
elsewhere (``http://dashboard.example:8265``) is reached through it as an HTTP proxy, so nothing leaves this machine.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from densenet_ray.cli import main
from densenet_ray.dashboard.address import NEEDS_TOKEN, answer_of, lookup_environment
from densenet_ray.dashboard.client import ClusterError, DashboardClient, is_loopback
from tests.local_http import serving

ELSEWHERE = "http://dashboard.example:8265"


class Dashboard:
    """A dashboard that wants the token ``token``: the Authorization header of every request, in order."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.received: list[str | None] = []
        self.url = ""  # once served
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                sent = self.headers.get("Authorization")
                recorder.received.append(sent)
                ok = sent == f"Bearer {recorder.token}"
                body = json.dumps({"version": "5", "ray_version": "2.60.0"} if ok else {"error": "Unauthorized"})
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler


@pytest.fixture
def dashboard(ray_auth_token, monkeypatch) -> Iterator[Dashboard]:
    """A dashboard whose token is this machine's token file (the suite's, at RAY_AUTH_TOKEN_PATH), also answering
    for ``ELSEWHERE`` as an HTTP proxy; no RAY_AUTH_TOKEN or RAY_AUTH_MODE from the environment."""
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    dashboard = Dashboard(ray_auth_token.read_text().strip())
    with serving(dashboard.handler) as server:
        dashboard.url = f"http://127.0.0.1:{server.server_address[1]}"
        proxy = urllib.request.ProxyHandler({"http": dashboard.url})
        monkeypatch.setattr(urllib.request, "_opener", urllib.request.build_opener(proxy))  # what urlopen uses
        yield dashboard


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("10.0.0.5", False),
        ("0.0.0.0", False),
        ("::ffff:10.0.0.5", False),
        ("127.0.0.1.example.com", False),
        ("localhost.example.com", False),
        ("dashboard.example", False),
        (None, False),
    ],
)
def test_loopback_is_localhost_127_0_0_0_8_and_ipv6_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_token_file_goes_to_a_loopback_dashboard(dashboard) -> None:
    assert DashboardClient(dashboard.url).version()["ray_version"] == "2.60.0"
    assert dashboard.received == [f"Bearer {dashboard.token}"]


def test_a_dashboard_elsewhere_gets_no_token_and_the_error_says_how_to_send_it(dashboard, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # what Ray's CLI wants for the job server: not a yes for this
    with pytest.raises(ClusterError) as raised:
        DashboardClient(ELSEWHERE).version()
    message = str(raised.value)
    assert dashboard.received == [None]
    assert message.startswith(f"the Ray dashboard at {ELSEWHERE} needs a token (HTTP 401); ")
    assert "pass --send-token to send it to this one, or set RAY_AUTH_TOKEN" in message
    assert "\n" not in message and dashboard.token not in message


def test_send_token_or_ray_auth_token_sends_one_elsewhere(dashboard, monkeypatch) -> None:
    assert DashboardClient(ELSEWHERE, send_token=True).version()["ray_version"] == "2.60.0"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "the-token-for-that-cluster")
    with pytest.raises(ClusterError, match=r"rejected the token from RAY_AUTH_TOKEN \(HTTP 401\)"):
        DashboardClient(ELSEWHERE).version()
    assert dashboard.received == [f"Bearer {dashboard.token}", "Bearer the-token-for-that-cluster"]


def test_the_command_sends_the_token_elsewhere_only_with_send_token(dashboard, capsys) -> None:
    assert main(["dashboard", "--once", "--address", ELSEWHERE]) == 1
    refused = capsys.readouterr().err
    assert refused.count("\n") == 1 and "needs a token (HTTP 401)" in refused and "--send-token" in refused
    dashboard.token = "another-cluster's"  # the flag sends this machine's file; that dashboard refuses it
    assert main(["dashboard", "--once", "--address", ELSEWHERE, "--send-token"]) == 1
    rejected = capsys.readouterr().err
    assert rejected.count("\n") == 1 and "rejected the token from" in rejected
    token = dashboard.received[-1].removeprefix("Bearer ")
    assert dashboard.received[:-1] == [None] and token and token not in rejected


@pytest.mark.parametrize(
    ("address", "send_token", "mode", "withheld"),
    [
        (None, False, "token", False),  # the cluster on this machine
        ("auto", False, "token", False),
        ("127.0.0.1:6379", False, "token", False),
        ("[::1]:6379", False, "token", False),
        ("10.0.0.5:6379", False, "disabled", True),  # elsewhere: Ray's client would send the file in token mode
        ("10.0.0.5:6379", True, "token", False),
    ],
)
def test_the_gcs_lookup_sends_the_token_file_by_the_same_rule(
    ray_auth_token, monkeypatch, address, send_token, mode, withheld
) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    env, held_back = lookup_environment(address, send_token)
    assert (env["RAY_AUTH_MODE"], held_back) == (mode, withheld)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "the-token-for-that-cluster")  # the user naming the token: sent anywhere
    named = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "the-token-for-that-cluster"}
    assert lookup_environment(address, send_token) == (named, False)


def test_a_cluster_elsewhere_that_wants_the_token_says_how_to_send_it(ray_auth_token) -> None:
    answer = {"error": "the Ray cluster at 10.0.0.5:6379 needs its token: ...", NEEDS_TOKEN: True}
    done = subprocess.CompletedProcess([], 0, stdout=json.dumps(answer) + "\n", stderr="")
    with pytest.raises(ClusterError, match=r"needs its token; .* pass --send-token to send it there, or set RAY_AUTH"):
        answer_of(done, "10.0.0.5:6379", withheld=True)
    with pytest.raises(ClusterError, match=r"^the Ray cluster at 10.0.0.5:6379 needs its token: \.\.\.$"):
        answer_of(done, "10.0.0.5:6379", withheld=False)
