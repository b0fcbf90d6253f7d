"""Which Ray dashboard to read: ``--address``, else ``RAY_API_SERVER_ADDRESS`` or ``RAY_ADDRESS``, else the cluster
started on this machine.

An ``http(s)://`` address is used as it is. A cluster address (``host:6379``, ``auto``) or none at all is resolved
to the cluster's GCS and the dashboard's URL is read from the GCS key-value store. With no address, the cluster on
this machine is the one in Ray's temp directory (``$RAY_TMPDIR/ray``, else ``/tmp/ray``), as ``ray.init()`` and
``densenet-ray train`` find it: the cluster the last ``ray start`` there recorded in ``ray_current_cluster`` if it
still runs, else the one cluster running from that directory (a script's ``ray.init()``). A stale record (a head
stopped without ``ray stop``) and clusters started from other temp directories (another user's, a test's) are not
this machine's cluster; ``RAY_ADDRESS=auto`` takes any one cluster running here, as Ray's ``auto`` does. That
lookup is the dashboard layer's only use of Ray's Python package; everything else is plain HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback

from densenet_ray.dashboard.client import SEND_TOKEN_FLAG, ClusterError, is_loopback, token_path

GCS_LOOKUP_SECONDS = 20.0
NEEDS_TOKEN = "needs_token"  # the lookup child's answer when the cluster refused it for want of a token


def configured_address(explicit: str | None) -> str | None:
    """The address the user gave, by flag or environment, or None."""
    return explicit or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def resolve_address(explicit: str | None, send_token: bool = False) -> str | None:
    """The dashboard URL to read; None when no address was given and no cluster runs on this machine.
    ``send_token``: send this machine's token file to a cluster elsewhere too (see :func:`lookup_environment`).

    Raises :class:`ClusterError` (one line) for an address that cannot be resolved, and ``RuntimeError`` (a bug,
    with the child's traceback) when the lookup itself fails."""
    address = configured_address(explicit)
    if address and address.startswith(("http://", "https://")):
        return address.rstrip("/")
    if address and "://" in address:
        raise ClusterError(
            f"--address {address} is not a dashboard address; give the dashboard's URL, e.g. http://HEAD:8265"
        )
    return _dashboard_from_gcs(address, send_token)


def lookup_environment(address: str | None, send_token: bool = False) -> tuple[dict[str, str], bool]:
    """The lookup child's environment, and whether this machine's token file was held back from the cluster.

    As the dashboard's own requests (:func:`densenet_ray.dashboard.client.auth_token`): ``RAY_AUTH_TOKEN`` goes to
    any cluster; the token file (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``) goes to a cluster on this
    machine (no address, ``auto``, or a loopback GCS: one started with token auth, Ray 2.60's default, needs it) and
    elsewhere only with ``send_token``. Ray's client sends the file whenever ``RAY_AUTH_MODE=token``, so for a
    cluster elsewhere the child runs with ``RAY_AUTH_MODE=disabled`` instead."""
    env = dict(os.environ)
    mode = env.get("RAY_AUTH_MODE", "").lower()
    if mode == "disabled":
        return env, False
    if env.get("RAY_AUTH_TOKEN"):
        env["RAY_AUTH_MODE"] = mode or "token"
        return env, False
    here = address in (None, "", "auto") or is_loopback(_host(address))
    if here or send_token:
        if not mode and token_path().exists():
            env["RAY_AUTH_MODE"] = "token"
        return env, False
    env["RAY_AUTH_MODE"] = "disabled"
    return env, True


def _host(address: str) -> str:
    """The host of ``HOST:PORT`` (IPv6 in brackets or not)."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host.strip("[]")


def _dashboard_from_gcs(address: str | None, send_token: bool) -> str | None:
    """Ask the cluster's GCS for its dashboard URL in a child process: Ray's client prints from C++, reads its auth
    mode once per process, and may retry a dead GCS for a minute; a child keeps all of that out of this one."""
    command = [sys.executable, "-m", "densenet_ray.dashboard.address", address or ""]
    env, withheld = lookup_environment(address, send_token)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=GCS_LOOKUP_SECONDS)
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"no answer from the Ray cluster at {address or 'this machine'} within {GCS_LOOKUP_SECONDS:.0f} s; "
            "give the dashboard's URL with --address http://HEAD:8265"
        ) from None
    return answer_of(done, address, withheld)


def answer_of(done: subprocess.CompletedProcess, address: str | None, withheld: bool = False) -> str | None:
    """The dashboard URL from the lookup child's last line. Its ``error`` is the user's to act on and is raised as
    :class:`ClusterError` (for a cluster that wants a token, how to send one: ``withheld`` says this machine's token
    file was held back); a Python error in the child (its ``bug`` line, or a traceback it died with before it
    could answer) is a bug and is raised as ``RuntimeError`` with the child's traceback, never as a user error."""
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        if "Traceback (most recent call last)" in done.stderr:
            raise RuntimeError(f"the Ray dashboard lookup died with a Python error:\n{done.stderr.strip()}") from None
        tail = " ".join(done.stderr.split())[-300:] or f"exit code {done.returncode}"
        raise ClusterError(f"cannot find the Ray dashboard for {address or 'the local cluster'}: {tail}") from None
    if answer.get("bug"):
        raise RuntimeError(f"the Ray dashboard lookup failed: {answer['bug']}\n{answer.get('traceback', '').strip()}")
    if answer.get(NEEDS_TOKEN) and withheld:
        raise ClusterError(
            f"the Ray cluster at {address} needs its token; this machine's token file ({token_path()}) goes only to "
            f"a cluster on this machine: pass {SEND_TOKEN_FLAG} to send it there, or set RAY_AUTH_TOKEN to its token"
        )
    if answer.get("error"):
        raise ClusterError(answer["error"])
    return answer.get("url")


def _port(address: str) -> str:
    return address.rsplit(":", 1)[-1]


def _running_clusters(temp_dir: str | None) -> list[str]:
    """The GCS addresses of the clusters with a raylet on this machine; only those started from ``temp_dir`` (a
    Ray temp directory) unless it is None. A raylet's command line names both (``--gcs-address``, ``--temp_dir``)."""
    import psutil
    from ray._private import services

    wanted = os.path.realpath(temp_dir) if temp_dir else None
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or []
        if not services._is_raylet_process(arguments):
            continue
        flags = dict(part.split("=", 1) for argument in arguments for part in argument.split(" ") if "=" in part)
        gcs, started_in = flags.get("--gcs-address"), flags.get("--temp_dir")
        if gcs and gcs != "None" and (wanted is None or (started_in and os.path.realpath(started_in) == wanted)):
            found.add(gcs)
    return sorted(found)


def _local_cluster(address: str | None) -> str | None:
    """The GCS address of this machine's cluster for no address or ``auto`` (see the module docstring)."""
    from ray._common.utils import get_default_ray_temp_dir
    from ray._private import services

    temp_dir = get_default_ray_temp_dir()
    recorded = services.find_bootstrap_address(temp_dir)  # written by the last `ray start` there
    running = _running_clusters(None if address == "auto" else temp_dir)
    if recorded and _port(recorded) in {_port(gcs) for gcs in running}:
        return recorded
    if not running:
        if address == "auto":
            raise ClusterError("no Ray cluster runs on this machine (RAY_ADDRESS=auto)")
        return None
    if len(running) > 1:
        raise ClusterError(
            f"{len(running)} Ray clusters run on this machine ({', '.join(running)}); pick one with --address"
        )
    return running[0]


def _lookup(address: str | None) -> str | None:
    logging.getLogger("ray").setLevel(logging.ERROR)
    from ray._private import ray_constants, services
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # in the compiled module, not in its .pyi

    if address in (None, "auto"):
        bootstrap = _local_cluster(address)
        if bootstrap is None:
            return None
    else:
        try:
            bootstrap = services.canonicalize_bootstrap_address(address)
        except ValueError:  # "Invalid address format"
            raise ClusterError(
                f"--address {address} is not a Ray address; give HOST:PORT of the head's GCS, or the dashboard's "
                "URL, e.g. http://HEAD:8265"
            ) from None
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


def _unreachable(error: BaseException) -> bool:
    """A cluster that does not answer: Ray's RPC and timeout errors, refused or unknown hosts."""
    from ray.exceptions import GetTimeoutError, RpcError

    return isinstance(error, RpcError | GetTimeoutError | ConnectionError | TimeoutError | OSError)


def _where(error: BaseException) -> str:
    """``file:line`` of the frame that raised ``error`` (its traceback's last frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def main(argv: list[str]) -> int:
    """The child process: its last line is ``{"url": ...}``, ``{"error": "one line"}`` for what the user can act
    on (no such cluster, a token it needs, a cluster that does not answer), or ``{"bug": "file:line: Type: msg",
    "traceback": ...}`` for anything else, which the parent raises as a bug."""
    given = argv[0] if argv else ""
    where = f"at {given}" if given else "on this machine"
    try:
        print(json.dumps({"url": _lookup(given or None)}))
        return 0
    except ClusterError as error:
        print(json.dumps({"error": str(error)}))
        return 0
    except Exception as error:  # sorted below: a known cluster failure, or a bug with its location
        line = " ".join(str(error).split()) or type(error).__name__
        needs_token = "InvalidAuthToken" in line or "Unauthenticated" in line
        if needs_token:
            message = (
                f"the Ray cluster {where} needs its token: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to its file "
                "(~/.ray/auth_token where the cluster was started)"
            )
        elif _unreachable(error):
            message = f"cannot reach the Ray cluster {where}: {type(error).__name__}: {line}"
        else:
            bug = f"{_where(error)}: {type(error).__name__}: {line}"
            print(json.dumps({"bug": bug, "traceback": traceback.format_exc()}))
            return 1
        print(json.dumps({"error": message, NEEDS_TOKEN: needs_token}))
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
