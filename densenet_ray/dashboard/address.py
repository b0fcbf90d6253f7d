"""Which Ray dashboard to read: ``--address``, else ``RAY_API_SERVER_ADDRESS`` or ``RAY_ADDRESS``, else the cluster
started on this machine, by the same rules as ``ray job``.

An ``http(s)://`` address is used as it is. A cluster address (``host:6379``, ``auto``) or none at all is resolved the
way Ray's job client does it: find the cluster's GCS (the last ``ray start`` on this machine, or the one GCS process
running) and read the dashboard's URL from the GCS key-value store. That one lookup is the dashboard layer's only use
of Ray's Python package; everything else is plain HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from densenet_ray.dashboard.client import ClusterError, token_path

GCS_LOOKUP_SECONDS = 20.0


def configured_address(explicit: str | None) -> str | None:
    """The address the user gave, by flag or environment, or None."""
    return explicit or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def resolve_address(explicit: str | None) -> str | None:
    """The dashboard URL to read; None when no address was given and no cluster runs on this machine.

    Raises :class:`ClusterError` (one line) for an address that cannot be resolved."""
    address = configured_address(explicit)
    if address and address.startswith(("http://", "https://")):
        return address.rstrip("/")
    if address and "://" in address:
        raise ClusterError(
            f"--address {address} is not a dashboard address; give the dashboard's URL, e.g. http://HEAD:8265"
        )
    return _dashboard_from_gcs(address)


def _dashboard_from_gcs(address: str | None) -> str | None:
    """Ask the cluster's GCS for its dashboard URL in a child process: Ray's client prints from C++, reads its auth
    mode once per process, and may retry a dead GCS for a minute; a child keeps all of that out of this one."""
    command = [sys.executable, "-m", "densenet_ray.dashboard.address", address or ""]
    env = dict(os.environ)
    if not env.get("RAY_AUTH_MODE") and (env.get("RAY_AUTH_TOKEN") or token_path().exists()):
        env["RAY_AUTH_MODE"] = "token"  # a local cluster started with token auth (Ray 2.60's default)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=GCS_LOOKUP_SECONDS)
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"no answer from the Ray cluster at {address or 'this machine'} within {GCS_LOOKUP_SECONDS:.0f} s; "
            "give the dashboard's URL with --address http://HEAD:8265"
        ) from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " ".join(done.stderr.split())[-300:]
        raise ClusterError(f"cannot find the Ray dashboard for {address or 'the local cluster'}: {tail}") from None
    if answer.get("error"):
        raise ClusterError(answer["error"])
    return answer.get("url")


def _lookup(address: str | None) -> str | None:
    logging.getLogger("ray").setLevel(logging.ERROR)
    from ray._private import ray_constants, services
    from ray._raylet import GcsClient

    if address in (None, "auto"):
        bootstrap = services.canonicalize_bootstrap_address(None)  # the last `ray start` here, if it still runs
        running = sorted(services.find_gcs_addresses())
        if bootstrap is None or _port(bootstrap) not in {_port(gcs) for gcs in running}:
            if not running:
                if address == "auto":
                    raise ClusterError("no Ray cluster runs on this machine (RAY_ADDRESS=auto)")
                return None
            if len(running) > 1:
                raise ClusterError(
                    f"{len(running)} Ray clusters run on this machine ({', '.join(running)}); pick one with --address"
                )
            bootstrap = running[0]
    else:
        bootstrap = services.canonicalize_bootstrap_address(address)
    client = GcsClient(address=bootstrap)
    value = client.internal_kv_get(
        ray_constants.DASHBOARD_ADDRESS.encode(), ray_constants.KV_NAMESPACE_DASHBOARD, timeout=5
    )
    if not value:
        raise ClusterError(
            f"the Ray cluster at {bootstrap} runs without a dashboard (start it with `ray start --head`, which "
            "includes one, or ray.init(include_dashboard=True))"
        )
    return f"http://{value.decode()}"


def main(argv: list[str]) -> int:
    """The child process: prints ``{"url": ...}`` or ``{"error": "one line"}`` as its last line."""
    try:
        print(json.dumps({"url": _lookup(argv[0] or None)}))
    except Exception as error:  # noqa: BLE001 - every failure is reported to the parent as one line
        line = " ".join(str(error).split()) or type(error).__name__
        if "InvalidAuthToken" in line or "Unauthenticated" in line:
            where = f"at {argv[0]}" if argv[0] else "on this machine"
            line = (
                f"the Ray cluster {where} needs its token: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to its file "
                "(~/.ray/auth_token where the cluster was started)"
            )
        elif not isinstance(error, ClusterError):
            line = f"cannot find the Ray dashboard for {argv[0] or 'the local cluster'}: {line}"
        print(json.dumps({"error": line}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def _port(address: str) -> str:
    return address.rsplit(":", 1)[-1]
