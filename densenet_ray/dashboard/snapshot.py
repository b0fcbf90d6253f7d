"""What the dashboard shows, as plain data: one :class:`Snapshot` per poll, built from the Ray dashboard's HTTP API
and the run storage, drawn by :mod:`densenet_ray.dashboard.render` or printed as JSON.

Nothing here draws or talks to the network; :func:`build_snapshot` joins what the sources return.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "densenet-ray.dashboard/1"
ACTIVE_STATUSES = {"PENDING", "RUNNING", "INITIALIZING", "SCHEDULING", "RESTARTING", "RESIZING", "ACTIVE"}


@dataclass
class ClusterInfo:
    """The cluster's size and load: nodes and the CPUs and GPUs in use out of the total."""

    address: str
    ray_version: str | None = None
    nodes_alive: int = 0
    nodes_dead: int = 0
    cpus_used: float | None = None
    cpus_total: float = 0.0
    gpus_used: float | None = None
    gpus_total: float = 0.0
    train_state: bool = False  # whether the Train V2 run API answered (RAY_TRAIN_ENABLE_STATE_TRACKING=1)


@dataclass
class JobRow:
    """A submitted job (``ray job submit``); plain ``ray.init`` drivers are left out."""

    submission_id: str
    status: str
    entrypoint: str  # shortened, with secret-looking values masked
    job_id: str | None = None
    start_time: float | None = None  # seconds since the epoch
    end_time: float | None = None
    duration_s: float | None = None
    message: str | None = None  # one line, for jobs that failed or were stopped


@dataclass
class RunRow:
    """A training run: its state from Ray Train (when the cluster reports it) and its figures from storage."""

    name: str
    run_dir: str | None
    status: str
    status_source: str  # "train" (Ray Train's run API) or "storage" (the run's own files)
    model: str | None = None
    epoch: int = 0
    epochs: int | None = None
    progress: float = 0.0  # 0..1 of the whole run: finished epochs and the running epoch's batches, over all epochs
    eta_s: float | None = None
    images_per_s: float | None = None
    loss: float | None = None
    test_error: float | None = None
    best_test_error: float | None = None
    best_epoch: int | None = None
    multi_label: bool = False  # errors are 1 - mean AUROC, shown as AUROC
    loss_history: list[float] = field(default_factory=list)
    error_history: list[float] = field(default_factory=list)
    attempts: int | None = None
    restarts: int | None = None
    workers_alive: int | None = None
    workers: int | None = None
    job: str | None = None  # the submission id (or job id) that started it
    sweep: str | None = None  # the sweep whose trial this is
    updated: float | None = None  # last write seen in storage, seconds since the epoch
    status_detail: str | None = None
    stopped: str | None = None  # why the run ended before its epochs (--early-stop, --stop-at-error)
    preemptions: int = 0  # preemption notices the run had
    world_sizes: list[int] = field(default_factory=list)  # each epoch's world size (an elastic run's may change)


@dataclass
class TrialRow:
    """One trial of a sweep."""

    trial_id: str
    label: str
    status: str
    options: dict[str, Any] = field(default_factory=dict)  # the searched options of this trial
    epoch: int = 0
    epochs: int | None = None
    test_error: float | None = None
    best_test_error: float | None = None
    run_dir: str | None = None
    multi_label: bool = False


@dataclass
class SweepRow:
    """A sweep (``densenet-ray tune``): its trials and the best one so far."""

    name: str
    url: str
    kind: str
    scheduler: str
    status: str
    trials: list[TrialRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    best_trial: str | None = None
    best_label: str | None = None
    best_test_error: float | None = None
    best_options: dict[str, Any] = field(default_factory=dict)
    multi_label: bool = False


@dataclass
class Snapshot:
    """Everything one poll found. ``cluster`` is None when only storage was read."""

    time: float
    cluster: ClusterInfo | None
    jobs: list[JobRow]
    runs: list[RunRow]
    sweeps: list[SweepRow]
    storage: list[str]
    notes: list[str] = field(default_factory=list)  # why something is missing (one line each)

    def to_json(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready dict, with a schema tag for scripts."""
        return {"schema": SCHEMA, **asdict(self)}


def job_rows(jobs: list[dict[str, Any]], now: float | None = None) -> list[JobRow]:
    """Rows for the job API's entries: submissions only (plain drivers such as a Tune script's are left out),
    running ones first, then newest first. Runtime environments and metadata are never copied."""
    now = time.time() if now is None else now
    rows = []
    for job in jobs:
        if job.get("type") == "DRIVER" or not job.get("submission_id"):
            continue
        start = job["start_time"] / 1000 if job.get("start_time") else None
        end = job["end_time"] / 1000 if job.get("end_time") else None
        status = str(job.get("status", "UNKNOWN"))
        message = failure_line(job.get("message")) if status in ("FAILED", "STOPPED") else None
        rows.append(
            JobRow(
                submission_id=str(job["submission_id"]),
                status=status,
                entrypoint=shorten(mask_secrets(str(job.get("entrypoint", ""))), 80),
                job_id=job.get("job_id"),
                start_time=start,
                end_time=end,
                duration_s=None if start is None else max((end or now) - start, 0.0),
                message=None if message is None else mask_secrets(message),
            )
        )
    rows.sort(key=lambda row: (row.status not in ACTIVE_STATUSES, -(row.start_time or 0.0)))
    return rows


SECRET_WORDS = (
    r"SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|SIGNATURE|PRIVATE[-_]?KEY|ACCESS[-_]?KEY|API[-_]?KEY"
    r"|SESSION[-_]?KEY"
)
SECRET_NAME = rf"[\w.-]*(?:{SECRET_WORDS})[\w.-]*"
QUOTED = r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""  # a quoted value, with its escaped quotes
# "name": value and 'name': value (JSON, Python reprs): a bare value ends at , } ]
SECRET_KEY = re.compile(rf"""(["']{SECRET_NAME}["'][ \t]*[:=][ \t]*)({QUOTED}|[^\s,}}\]]+)""", re.IGNORECASE)
# NAME=value, name: value (environments, YAML, logs)
SECRET_ASSIGNMENT = re.compile(rf"(\b{SECRET_NAME}[ \t]*[:=][ \t]*)({QUOTED}|\S+)", re.IGNORECASE)
SECRET_FLAG = re.compile(rf"(--[\w-]*(?:{SECRET_WORDS})[\w-]*[ =])({QUOTED}|\S+)", re.IGNORECASE)
# An Authorization header's credentials, after its scheme; a Bearer token anywhere.
AUTHORIZATION = re.compile(
    r"""(\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:(?:Bearer|Basic|Token|ApiKey|Negotiate)[ \t]+)?)"""
    r"""([^\s"',]+)""",
    re.IGNORECASE,
)
BEARER = re.compile(r"(\bBearer[ \t]+)([\w.~+/-]+=*)")
URL_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^/\s:@]*:)[^\s/?#]+@")  # up to the authority's last @


def mask_secrets(text: str) -> str:
    """Secrets in free text (a job's entrypoint or message) replaced by ``***``: the values, bare or quoted, of
    ``NAME=value``, ``name: value``, ``--name value`` and JSON or Python ``"name": value`` pairs whose name looks
    like a secret (password, token, secret, access or API key, credential...); an ``Authorization`` header's
    credentials and any ``Bearer`` token; passwords in URLs. A quoted value keeps its quotes."""
    for pattern in (SECRET_KEY, SECRET_ASSIGNMENT, SECRET_FLAG, AUTHORIZATION, BEARER):
        text = pattern.sub(_masked_value, text)
    return URL_PASSWORD.sub(r"\1***@", text)


def _masked_value(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0] else ""
    return f"{match.group(1)}{quote}***{quote}"


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def failure_line(message: str | None) -> str | None:
    """One line from a failed job's message: Ray's first sentence plus the last line of the logs it quotes (usually
    the exception)."""
    if not message:
        return None
    head, _, logs = message.partition("\n")
    head = head.split(", last available logs")[0].strip()
    last = next((line.strip() for line in reversed(logs.splitlines()) if line.strip()), "")
    return shorten(f"{head}: {last}" if last and last not in head else head, 160)


def cluster_info(
    address: str, version: dict[str, Any] | None, nodes: list[dict[str, Any]], status: dict[str, Any] | None
) -> ClusterInfo:
    """Cluster figures from ``/api/version``, ``/api/v0/nodes`` and ``/api/cluster_status`` (any may be missing)."""
    info = ClusterInfo(address=address, ray_version=(version or {}).get("ray_version"))
    alive = [node for node in nodes if node.get("state") == "ALIVE"]
    info.nodes_alive, info.nodes_dead = len(alive), len(nodes) - len(alive)
    info.cpus_total = sum(float(node.get("resources_total", {}).get("CPU", 0)) for node in alive)
    info.gpus_total = sum(float(node.get("resources_total", {}).get("GPU", 0)) for node in alive)
    usage = ((status or {}).get("clusterStatus") or {}).get("loadMetricsReport", {}).get("usage") or {}
    if "CPU" in usage:
        info.cpus_used, info.cpus_total = float(usage["CPU"][0]), float(usage["CPU"][1])
    if "GPU" in usage:
        info.gpus_used, info.gpus_total = float(usage["GPU"][0]), float(usage["GPU"][1])
    elif usage:
        info.gpus_used = 0.0
    return info
