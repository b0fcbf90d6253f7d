"""Which Ray cluster a command runs on, and the one way training, sweeps and parallel builds connect to it.

In order:

1. Ray already initialised in this process (a Python API caller, a Tune trial's driver): use it as it is.
2. ``RAY_ADDRESS`` set: connect to that cluster. Its CPUs are not checked, because an autoscaling cluster
   adds nodes when work waits; a ``--gpu`` job is refused on a cluster that can never have its GPUs
   (:mod:`densenet_ray.cluster_gpus`).
3. A live cluster started on this machine with ``ray start`` (Ray records its address in
   ``<ray temp dir>/ray_current_cluster``): connect to it, as a plain ``ray.init()`` would, say so in one line and
   check that the job fits in it (its GPUs as for ``RAY_ADDRESS``). ``--local`` skips this and starts a private
   instance even then.
4. Otherwise a private local instance sized for the job (the GPUs Ray finds on this machine, a ``--gpu`` job
   refused when they are too few), shut down when the command ends. A recorded cluster that does not answer (its
   head crashed or the machine rebooted without ``ray stop``) gets one line and is otherwise left alone: its stale
   file belongs to whoever started it.

Only what this module started is shut down; a cluster it connected to keeps running. Ray's own start-up and info
logging, Tune's reporter and the colour codes around the cluster's messages stay out of this process's output
unless ``verbose`` is set (:data:`QUIET_OUTPUT`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypedDict

from densenet_ray.cluster_gpus import check_gpus
from densenet_ray.data.storage.s3client import checksum_environment
from densenet_ray.errors import UserError
from densenet_ray.printing import PrintLine


@dataclass(frozen=True)
class RayOptions:
    """How the user asked to run: ``local`` forces a private instance; ``verbose`` lets Ray's logging through."""

    local: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class ClusterNeeds:
    """What a job needs from the cluster at once, and how a private instance for it is started.

    Attributes:
        cpus: CPUs the job must hold at once (training: workers x CPUs per worker).
        private_cpus: the CPUs a private instance gets beyond ``cpus`` (a parallel build's task count); at least
            this machine's CPU count.
        gpus: GPUs the job holds at once.
        what: the job's shape in words, for the error when it cannot fit (``2 workers x 1 CPU``).
        resources: custom resources a private instance defines (a sweep's ``TRAIN_DRIVER``).
        dashboard: a private instance also starts the dashboard, whose state API Ray Train's placement-group
            cleaner needs when trials are stopped early.
    """

    cpus: float
    gpus: float = 0.0
    private_cpus: int = 0
    what: str = ""
    resources: dict[str, float] = field(default_factory=dict)
    dashboard: bool = False


@dataclass(frozen=True)
class Session:
    """The cluster in use: ``kind`` is ``existing`` (already initialised), ``address`` (``RAY_ADDRESS``),
    ``machine`` (a live cluster on this machine) or ``private`` (started here)."""

    kind: str
    address: str | None = None


def recorded_local_cluster() -> str | None:
    """The GCS address the latest ``ray start`` on this machine recorded (under Ray's temp directory), if any."""
    from ray._common.utils import get_ray_address_file

    path = get_ray_address_file(None)
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at ``host:port`` (a dead head's port refuses at once)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# Ray's own switches for what it prints in this process, read each time it prints. Tune's legacy reporter prints
# nothing at verbose 0; the newer one prints its settings box, "View detailed results here" and a TensorBoard hint
# into Ray's session directory at any verbosity (ray/tune/experimental/output.py). The raylet's warnings to every
# driver (ray/_private/worker.py, listen_error_messages) print even without log_to_driver: as plain text, at least.
QUIET_OUTPUT = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_COLOR_PREFIX": "0"}


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """This process's environment with ``values`` set (None: unset) for the block, then as it was."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class _InitKwargs(TypedDict):
    """What every ``ray.init`` call here passes besides the address (typed: ``ray.init`` checks each keyword)."""

    log_to_driver: bool
    logging_level: int
    configure_logging: bool
    runtime_env: dict[str, dict[str, str]]


def _init_kwargs(options: RayOptions, job_env: dict[str, str]) -> _InitKwargs:
    return {
        "log_to_driver": options.verbose,
        "logging_level": logging.INFO if options.verbose else logging.ERROR,
        "configure_logging": True,
        "runtime_env": {"env_vars": job_env},
    }


def job_environment() -> dict[str, str]:
    """The environment every process of the job gets: Ray Train's controller and workers, Tune's trials and Ray
    Data's tasks write S3 through pyarrow's client, which only the environment configures, so they get the checksum
    settings boto3 is given (:func:`~densenet_ray.data.storage.s3client.checksum_environment`). A variable already
    set here is the user's, and left out: Ray refuses a driver's variable that a submitted job's own sets too."""
    return {name: value for name, value in checksum_environment().items() if name not in os.environ}


def _use_local_token(options: RayOptions) -> None:
    """Send this machine's Ray token (``~/.ray/auth_token``, written by ``ray start``) when ``RAY_AUTH_MODE`` is
    unset, as ``ray.init()`` does when it starts a local instance: since Ray 2.52 a local ``ray start`` head requires
    it (https://docs.ray.io/en/latest/ray-security/token-auth.html). Ray 2.60 exposes this step only in a private
    module, pinned with the rest of Ray."""
    from ray._private.authentication import authentication_token_setup

    logger = logging.getLogger(authentication_token_setup.__name__)
    level = logger.level
    if not options.verbose:
        logger.setLevel(logging.ERROR)  # its "token authentication is enabled" notice is start-up chatter
    try:
        authentication_token_setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        logger.setLevel(level)


def _check_fit(needs: ClusterNeeds, address: str, print_line: PrintLine) -> None:
    """One line before any worker starts when the job can never fit in the cluster's CPUs (its GPUs:
    :func:`~densenet_ray.cluster_gpus.check_gpus`); a note when it must wait."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    if needs.cpus and total.get("CPU", 0) + 1e-9 < needs.cpus:
        raise UserError(
            f"the job needs {needs.cpus:g} CPUs ({needs.what}) but the Ray cluster at {address} has "
            f"{total.get('CPU', 0):g}; ask for fewer, or pass --local for a private instance sized for the job"
        )
    for name, wanted in (("CPU", needs.cpus), ("GPU", needs.gpus)):
        if wanted and free.get(name, 0) + 1e-9 < wanted <= total.get(name, 0) + 1e-9:
            print_line(f"{free.get(name, 0):g} of the cluster's {total.get(name, 0):g} {name}s are free now: waiting")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _own_address_for_its_processes() -> Iterator[None]:
    """The environment a private instance's processes inherit (Ray's GCS, raylet and every worker copy this
    process's environment when they start) names the instance itself: its GCS port chosen here
    (``RAY_GCS_SERVER_PORT``) and ``RAY_ADDRESS`` pointing at it. Ray code inside the workers that looks a cluster
    up with no address (Ray Train's placement-group cleaner asks the state API whether its controller is alive)
    otherwise finds the machine's recorded cluster, a stale record of a stopped one, or several running ones, and
    decides the controller is gone (another cluster's state API does not know it; the cleaner then removes a live
    run's placement group) or stops checking, which leaks the placement groups of trials a sweep stops early until
    the sweep waits forever. This process's own environment is restored once the instance runs."""
    port = _free_port()
    own = {"RAY_GCS_SERVER_PORT": str(port), "RAY_ADDRESS": f"127.0.0.1:{port}"}
    # Unset: the state API would read that dashboard before RAY_ADDRESS.
    with _environment({**own, "RAY_API_SERVER_ADDRESS": None}):
        yield


def _start_private(needs: ClusterNeeds, options: RayOptions, job_env: dict[str, str]) -> None:
    import ray

    cpus = max(
        os.cpu_count() or 1, int(needs.cpus + 0.999), needs.private_cpus
    )  # logical CPUs: a small machine may oversubscribe
    with _own_address_for_its_processes():
        ray.init(
            address="local",  # RAY_ADDRESS, set for the instance's processes, is not read for "local"
            num_cpus=cpus,
            resources=dict(needs.resources) or None,
            include_dashboard=needs.dashboard,
            dashboard_host="127.0.0.1",
            **_init_kwargs(options, job_env),
        )


def connect(
    needs: ClusterNeeds, options: RayOptions, print_line: PrintLine = print, job_env: dict[str, str] | None = None
) -> Session:
    """Initialise Ray for a job as the module docstring says, ``job_env`` (default :func:`job_environment`) in the
    environment of each of its processes; returns which cluster it is."""
    import ray

    job_env = job_environment() if job_env is None else job_env
    if ray.is_initialized():
        return Session("existing")
    address = os.environ.get("RAY_ADDRESS")
    if address and not options.local:
        ray.init(**_init_kwargs(options, job_env))
        return _checked(Session("address", address), needs, print_line)
    recorded = None if options.local else recorded_local_cluster()
    if recorded and answers(recorded):
        _use_local_token(options)
        ray.init(address=recorded, **_init_kwargs(options, job_env))
        print_line(f"using the Ray cluster at {recorded} started on this machine (--local for a private one)")
        return _checked(Session("machine", recorded), needs, print_line)
    if recorded:
        print_line(f"the Ray cluster recorded at {recorded} does not answer; starting a private local instance")
    _start_private(needs, options, job_env)
    return _checked(Session("private"), needs, print_line)


def _checked(session: Session, needs: ClusterNeeds, print_line: PrintLine) -> Session:
    """``session`` once the job's GPUs (and, on this machine's cluster, its CPUs) can be had; otherwise Ray is let
    go (a private instance stops, a cluster connected to keeps running) and the refusal raised."""
    import ray

    try:
        check_gpus(needs.gpus, session.address, print_line)
        if session.kind == "machine":
            _check_fit(needs, session.address or "", print_line)
    except BaseException:
        ray.shutdown()
        raise
    return session


@contextlib.contextmanager
def ray_session(
    needs: ClusterNeeds, options: RayOptions | None = None, print_line: PrintLine = print
) -> Iterator[Session]:
    """Ray for the duration of a ``with`` block: connected or started by :func:`connect`, then disconnected (a
    private instance is shut down; a cluster connected to keeps running)."""
    import ray

    options = options or RayOptions()
    job_env = job_environment()
    # This process's own pyarrow S3 clients (the run's storage filesystem) take it from the environment too.
    with _environment({**job_env, **({} if options.verbose else QUIET_OUTPUT)}):
        session = connect(needs, options, print_line, job_env)
        try:
            yield session
        finally:
            if session.kind != "existing":
                ray.shutdown()
