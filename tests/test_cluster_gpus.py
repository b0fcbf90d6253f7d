"""Which clusters a ``--gpu`` job is refused on, from what Ray records: the autoscaler v1 status reports below have
the shape a real head writes (a hand-started head: one ``node_<id>`` type per node; ``ray start
--autoscaling-config``: the config's node types). The refusal on a real cluster with no GPU:
tests/train/test_launcher.py."""

from __future__ import annotations

import json

import pytest
import ray

from densenet_ray import cluster_gpus
from densenet_ray.errors import UserError

HEAD = "7162b9a52936a34ac486a8e106ba0adfd96bdfde0cc7acdb5fc60276"


def _report(active: dict[str, int], launching: dict[str, int] | None = None) -> str:
    pending = [["10.0.0.9", node_type, "launching"] for node_type in launching or {}]
    report = {"active_nodes": active, "idle_nodes": None, "pending_nodes": pending, "pending_launches": {}}
    return json.dumps({"time": 0, "autoscaler_report": report, "load_metrics_report": {}})


def test_a_hand_started_cluster_has_the_gpus_it_has_now() -> None:
    reported = cluster_gpus.node_types(_report({f"node_{HEAD}": 1}))
    assert reported == {f"node_{HEAD}"}
    assert cluster_gpus.ceiling(0.0, None, reported, [HEAD]) == 0.0


def test_a_cluster_with_configured_node_types_may_grow_by_gpus_not_known_here() -> None:
    for reported in ({"ray.head.default"}, cluster_gpus.node_types(_report({}, launching={"gpu_a10g": 1}))):
        assert cluster_gpus.ceiling(0.0, None, reported, [HEAD]) is None
    assert cluster_gpus.ceiling(0.0, None, cluster_gpus.node_types(None), [HEAD]) is None  # no report: cannot tell


def test_an_autoscaling_limit_ray_records_is_the_ceiling() -> None:
    assert cluster_gpus.ceiling(0.0, {"CPU": 64, "GPU": 8}, None, []) == 8.0
    assert cluster_gpus.ceiling(1.0, {"CPU": 64}, None, []) == 1.0  # node groups without GPUs


@pytest.mark.parametrize(
    ("address", "most", "message"),
    [
        (
            None,
            None,
            "--gpu: this machine has 0 GPUs and this run needs 2 (one per worker); drop --gpu to run on CPUs, or "
            "set RAY_ADDRESS to a cluster with GPUs",
        ),
        (
            "10.0.0.1:6379",
            0.0,
            "--gpu: the Ray cluster at 10.0.0.1:6379 has 0 GPUs and this run needs 2 (one per worker); drop --gpu to "
            "run on CPUs, or start the cluster on GPU machines",
        ),
        (
            "10.0.0.1:6379",
            1.0,
            "--gpu: the Ray cluster at 10.0.0.1:6379 has 0 GPUs (at most 1 once its autoscaler adds nodes) and this "
            "run needs 2 (one per worker); drop --gpu to run on CPUs, or start the cluster on GPU machines",
        ),
    ],
)
def test_too_few_gpus_for_good_is_one_line(monkeypatch, address, most, message) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(cluster_gpus, "gpu_ceiling", lambda wait_s: most)
    with pytest.raises(UserError) as refused:
        cluster_gpus.check_gpus(2, address, print)
    assert str(refused.value) == message


def test_a_cluster_that_may_add_gpus_is_waited_for(monkeypatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    for most in (None, 4.0):
        monkeypatch.setattr(cluster_gpus, "gpu_ceiling", lambda wait_s, most=most: most)
        cluster_gpus.check_gpus(2, "10.0.0.1:6379", lines.append)
    assert lines == ["the Ray cluster at 10.0.0.1:6379 has 0 GPUs now: waiting for its autoscaler to add GPU nodes"] * 2
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    cluster_gpus.check_gpus(2, None, lines.append)  # enough GPUs: nothing to say
    cluster_gpus.check_gpus(0, None, lines.append)  # no --gpu
    assert len(lines) == 2
