"""Whether the Ray cluster can give a ``--gpu`` job its GPUs, checked once connected and before any worker starts.

Ray lets a job wait for GPUs, and Ray Train starts a worker group wherever Ray placed it: on a cluster with no GPU
a ``--gpu`` run ends inside a worker (``_setup_torch_process_group``: NCCL finds no GPU) after Ray has started
everything. A cluster that will never have the GPUs is refused in one line instead. A cluster whose autoscaler may
add GPU nodes is let through with a note, since its GPUs come when the job asks. Which clusters can grow is read from
what Ray itself keeps in its GCS (Ray 2.60, pinned with the project; these are its internal modules):

- the cluster config an autoscaler reports (KubeRay, autoscaler v2): the most GPUs its node groups can have, the
  figure Ray Train checks before it starts a worker group;
- otherwise the v1 autoscaler's status report (what ``ray status`` prints): a cluster started by hand is mirrored
  with one node type per live node (``node_<node id>``); any other node type comes from an autoscaling config
  (``ray up``, ``ray start --autoscaling-config``), whose node types' GPUs the report does not give.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from densenet_ray.errors import UserError
from densenet_ray.printing import PrintLine

REPORT_WAIT_S = 6.0  # the v1 autoscaler reports every 5 s: a head started a moment ago may have no report yet


def node_types(status: str | bytes | None) -> set[str] | None:
    """The node types in a v1 autoscaler status report (its JSON); None without one."""
    report = (json.loads(status).get("autoscaler_report") or {}) if status else {}
    if not report:
        return None
    launching = {node_type for _, node_type, *_ in report.get("pending_nodes") or []}
    named = (report.get("active_nodes") or {}).keys() | (report.get("idle_nodes") or {}).keys()
    return set(named) | set(report.get("pending_launches") or {}) | launching


def ceiling(
    now: float, limits: Mapping[str, float] | None, reported: set[str] | None, node_ids: list[str]
) -> float | None:
    """The most GPUs a cluster with ``now`` GPUs can have: its autoscaling ``limits`` when Ray has them, ``now``
    when every ``reported`` node type mirrors one of its nodes (``node_ids``); None when it may grow by node types
    whose GPUs are not known here (or there is no report)."""
    from ray.autoscaler._private.util import format_readonly_node_type

    if limits is not None:
        return max(now, float(limits.get("GPU", 0)))
    if reported is None:
        return None
    return now if reported <= {format_readonly_node_type(node_id) for node_id in node_ids} else None


def _status_report(wait_s: float) -> bytes | None:
    """The v1 autoscaler's latest status report from the GCS; None when it has none (autoscaler v2)."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    deadline = time.monotonic() + wait_s
    while True:
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        if status or time.monotonic() >= deadline:
            return status or None
        time.sleep(0.5)


def gpu_ceiling(wait_s: float = REPORT_WAIT_S) -> float | None:
    """:func:`ceiling` of the connected cluster."""
    import ray
    from ray._private.state import state

    now = ray.cluster_resources().get("GPU", 0.0)
    limits = state.get_max_resources_from_cluster_config()
    reported = None if limits is not None else node_types(_status_report(wait_s))
    return ceiling(now, limits, reported, [node["NodeID"] for node in ray.nodes()])


def check_gpus(gpus: float, address: str | None, print_line: PrintLine, wait_s: float = REPORT_WAIT_S) -> None:
    """Refuse in one line a job needing ``gpus`` (one per worker) that the cluster at ``address`` (None: a private
    instance on this machine, whose GPUs Ray detected) can never give; a note when it waits for an autoscaler."""
    import ray

    if not gpus:
        return
    now = ray.cluster_resources().get("GPU", 0.0)
    if now + 1e-9 >= gpus:
        return
    needs = f"this run needs {gpus:g} (one per worker); drop --gpu to run on CPUs"
    if address is None:
        raise UserError(f"--gpu: this machine has {now:g} GPUs and {needs}, or set RAY_ADDRESS to a cluster with GPUs")
    most = gpu_ceiling(wait_s)
    if most is not None and most + 1e-9 < gpus:
        grows = f" (at most {most:g} once its autoscaler adds nodes)" if most > now else ""
        raise UserError(
            f"--gpu: the Ray cluster at {address} has {now:g} GPUs{grows} and {needs}, or start the cluster on GPU "
            "machines"
        )
    print_line(f"the Ray cluster at {address} has {now:g} GPUs now: waiting for its autoscaler to add GPU nodes")
