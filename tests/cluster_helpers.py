"""A real Ray head started with ``ray start --head --block`` for a test, and stopped through its own pid.

``--block`` keeps the ``ray start`` process in the foreground as the parent of the cluster's processes; on SIGTERM it
stops exactly those. So the teardown never touches another Ray instance on the machine (``ray stop`` would).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
# Ray addresses its nodes by 127.0.0.1 instead of the machine's interface (ray/_private/ray_constants.py), so the
# recorded cluster address and all traffic stay on the loopback.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default) and a worker's
# report waits in a queue of one until the poll after the previous report's (ray/train/v2/_internal/execution/
# context.py, ``_wait_then_report``): a tiny run that checkpoints every few steps spends most of its time waiting
# (a 2-epoch test run: 32.5 s at 2 s, 18.5 s at 0.25 s; 2 cores). The suite polls at FAST_TRAIN_POLL (Ray passes
# the setting from the driver to the controller and the workers); a test that times a run against a clock (a
# preemption deadline, a node lost mid-epoch, a dashboard that must see a run while it runs) sets DEFAULT_TRAIN_POLL.
TRAIN_POLL_VARIABLE = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
FAST_TRAIN_POLL = {TRAIN_POLL_VARIABLE: "0.5"}
DEFAULT_TRAIN_POLL = {TRAIN_POLL_VARIABLE: "2"}
# Ray Train starts a PreemptionWatcher actor in every run, on the path to its first step (a tiny run on 2 cores:
# 1.3 CPU-seconds and 2-6 s of its start-up, measured), to poll the nodes' drain state. The suite runs without it,
# as with FAST_TRAIN_POLL, except where a test drains a node (PREEMPTION_WATCHER, which is Ray's default).
WATCHER_VARIABLE = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
SUITE_TRAIN_SETTINGS = {**FAST_TRAIN_POLL, WATCHER_VARIABLE: "0"}
PREEMPTION_WATCHER = {WATCHER_VARIABLE: "1"}


# Ray's default ports (GCS, dashboard, client server, the dashboard agent's HTTP port): a test's free port that is one
# of them makes `ray start` refuse ("trying to use a port number 52365 that is used by other components").
RAY_DEFAULT_PORTS = frozenset({6379, 8265, 10001, 52365})


def free_port() -> int:
    """A port free on the loopback now, and none of Ray's defaults."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in RAY_DEFAULT_PORTS:
            return port


def ray_env(**extra: str) -> dict[str, str]:
    """This venv first on PATH (a job's ``python`` is the one ``ray start`` finds), no inherited RAY_ADDRESS."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class Head:
    """A running head: its dashboard (job server) address and the ``ray start`` process. ``ray_tmpdir`` is the
    ``RAY_TMPDIR`` under which it is this machine's recorded cluster (``<ray_tmpdir>/ray/ray_current_cluster``)."""

    address: str
    gcs_address: str
    process: subprocess.Popen
    log: Path
    ray_tmpdir: Path


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@contextmanager
def ray_head(
    tmp_path: Path,
    num_cpus: int = 2,
    extra_args: tuple[str, ...] = (),
    gcs_port: int | None = None,
    temp_dir: Path | None = None,
    **env: str,
) -> Iterator[Head]:
    """Start a head on 127.0.0.1 with free ports, yield it once its job server answers, then stop it by pid.
    ``temp_dir`` is Ray's temp directory, ``<root>/ray`` (where ``ray start`` records the cluster's address); by
    default a fresh one no driver finds by itself. The head runs with ``RAY_TMPDIR=<root>``, as a head started
    with Ray's default temp directory: Ray code in its workers that looks the cluster up with no address (Ray
    Train's placement-group cleaner) finds this head, never the machine's ``/tmp/ray`` (a stale record, another
    cluster)."""
    dashboard, gcs = free_port(), gcs_port or free_port()
    log = tmp_path / "ray-start.log"
    # Short: unix socket paths have a length limit.
    temp_dir = temp_dir or Path(f"/tmp/rt-{os.getpid()}-{dashboard}") / "ray"
    assert temp_dir.name == "ray", f"Ray's temp directory is <RAY_TMPDIR>/ray, not {temp_dir}"
    env = {"RAY_TMPDIR": str(temp_dir.parent), **env}
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--port={gcs}"]
    command += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--temp-dir={temp_dir}"]
    # Ray's fixed defaults for the node's agent (52365) and the client server (10001) are held by any other head on
    # the machine: a second head's agent then cannot serve HTTP and no job can be submitted to it ("No available
    # agent to submit job"). Free ports, as for the GCS and the dashboard.
    command += [f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    command += ["--include-dashboard=true", *extra_args]
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=ray_env(**env), start_new_session=True
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:  # 401 with token auth: the server is up
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield Head(address, f"127.0.0.1:{gcs}", process, log, temp_dir.parent)
    finally:
        stop_head(process)
        shutil.rmtree(temp_dir, ignore_errors=True)  # the session's sockets and logs
        with suppress(OSError):
            temp_dir.parent.rmdir()  # the root, when it held nothing else


def stop_head(process: subprocess.Popen, grace: float = 3) -> None:
    """SIGTERM to the ``ray start --block`` process and every process of its cluster at once, SIGKILL to what is left
    after ``grace`` seconds. Left to itself, ``ray start --block`` stops its processes one after another and took
    32 s to exit after a job had run (2 cores); a test cluster holds nothing that needs a graceful end."""
    family = _descendants(process.pid)
    for pid in (process.pid, *family):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in (process.pid, *family):
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.1)
        if _running(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.wait()


def reclaim_node(process: subprocess.Popen) -> None:
    """Every process of a node frozen (SIGSTOP), then killed (SIGKILL), as a reclaimed spot instance vanishes: none
    reports its end, so the GCS finds the node dead by its health check and, the node being drained for preemption
    past its deadline, records the death as a preemption (``AUTOSCALER_DRAIN_PREEMPTED``, ray
    src/ray/gcs/gcs_node_manager.cc, ``InferDeathInfo``). A raylet that outlives its agent by a moment reports its
    own end first ("dashboard_agent failed"), an unexpected termination Ray Train charges to ``--max-failures``."""
    family = (process.pid, *_descendants(process.pid))
    for sent in (signal.SIGSTOP, signal.SIGKILL):
        for pid in family:
            with suppress(ProcessLookupError):
                os.kill(pid, sent)
    process.wait()


def _running(pid: int) -> bool:
    """Alive and not a zombie: an exited process whose parent died stays in /proc until a reaper collects it, and
    in a container without an init process nobody might."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def recorded_local_head(tmp_path: Path, num_cpus: int = 2, **env: str) -> Iterator[tuple[Head, dict[str, str]]]:
    """A head recorded as this machine's live cluster in a private Ray temp directory: yields it with the
    environment (``RAY_TMPDIR``) under which a run with no RAY_ADDRESS finds it and uses it, as ``ray.init()`` would.
    The temp root is short because unix socket paths have a length limit. ``env``: more of the head's environment."""
    root = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        with ray_head(tmp_path, num_cpus=num_cpus, temp_dir=root / "ray", **LOOPBACK, **env) as head:
            recorded = root / "ray" / "ray_current_cluster"  # written just after the dashboard starts answering
            deadline = time.monotonic() + 60
            while not recorded.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the head at {head.gcs_address} never recorded itself in {recorded}")
                time.sleep(0.2)
            yield head, {"RAY_TMPDIR": str(root), **LOOPBACK}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def leave_stale_record(root: Path, log: Path) -> str:
    """A machine where ``ray start --head`` once ran and its head was stopped without ``ray stop`` (a crash, a
    reboot, its processes killed): a real head (0 CPUs, no dashboard) started with Ray temp directory
    ``<root>/ray``, stopped by its own pids once it has recorded itself; ``<root>/ray/ray_current_cluster`` stays
    and names a GCS that no longer answers. Returns that address. ``ray stop`` would remove the record, and would
    stop every Ray instance on the machine."""
    temp_dir, gcs = root / "ray", free_port()
    command = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=0", "--include-dashboard=false"]
    command += [f"--port={gcs}", f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}"]
    command += [f"--ray-client-server-port={free_port()}"]
    with open(log, "w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=ray_env(RAY_TMPDIR=str(root), **LOOPBACK),
            start_new_session=True,
        )
    recorded = temp_dir / "ray_current_cluster"
    try:
        deadline = time.monotonic() + 120
        while not (recorded.exists() and recorded.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start never recorded itself: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    finally:
        stop_head(process)
    return recorded.read_text().strip()


# A worker node the way Ray's own ``ray.cluster_utils.Cluster.add_node`` starts one: ``ray._private.node.Node`` with
# the head's GCS address. ``ray start --address`` cannot be used on one machine: it rewrites a 127.0.0.1 address to
# the machine's network interface (ray/_private/services.py, ``resolve_ip_for_localhost``), and everything here
# stays on the loopback.
_NODE_SCRIPT = """
import sys, time
import ray._private.node, ray._private.parameter
params = ray._private.parameter.RayParams(
    gcs_address=sys.argv[1], num_cpus=int(sys.argv[2]), num_gpus=0, node_ip_address="127.0.0.1",
    node_manager_port=0, min_worker_port=0, max_worker_port=0, include_log_monitor=False,
    object_store_memory=150 * 1024 * 1024,
)
params.dashboard_agent_listen_port = None  # its own free port, not the head agent's
node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=False)
print("node started", node.node_id, flush=True)
while True:
    time.sleep(3600)
"""


_NODE_IDS: dict[int, str] = {}  # the pid of each node process ray_worker_node started -> its Ray node id


def worker_node_id(process: subprocess.Popen) -> str:
    """The Ray node id (hex) of a node :func:`ray_worker_node` started."""
    return _NODE_IDS[process.pid]


@contextmanager
def ray_worker_node(tmp_path: Path, gcs_address: str, num_cpus: int = 1) -> Iterator[subprocess.Popen]:
    """A second node on 127.0.0.1 joined to the head at ``gcs_address``, in a process of its own that is yielded
    once the node runs; the caller may stop it early with :func:`stop_head` (by its pid), and it is stopped at the
    end in any case."""
    log = tmp_path / "ray-node.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", _NODE_SCRIPT, gcs_address, str(num_cpus)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=ray_env(RAY_AUTH_MODE="token", **LOOPBACK),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "node started" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker node did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        _NODE_IDS[process.pid] = log.read_text().split("node started", 1)[1].split()[0]
        yield process
    finally:
        _NODE_IDS.pop(process.pid, None)
        if process.poll() is None:
            stop_head(process)
