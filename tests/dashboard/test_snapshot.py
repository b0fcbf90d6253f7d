"""Snapshot building blocks: job rows, secret masking, failure lines, cluster figures, the JSON form."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from densenet_ray.dashboard.snapshot import (
    SCHEMA,
    Snapshot,
    cluster_info,
    failure_line,
    job_rows,
    mask_secrets,
    shorten,
)
from tests.dashboard.helpers import NOW

RAY_FAILURE = (
    "Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\n"
    "2026-11-26 02:35:47,203\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
    'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: --depth 7 is not 3n+4\n'
)


def _job(submission_id, status, start, end=None, kind="SUBMISSION", **extra):
    return {
        "type": kind,
        "submission_id": submission_id,
        "job_id": extra.pop("job_id", None),
        "status": status,
        "entrypoint": extra.pop("entrypoint", "python -m densenet_ray.cifar"),
        "start_time": start * 1000,
        "end_time": end * 1000 if end else None,
        "runtime_env": {"env_vars": {"AWS_SECRET_ACCESS_KEY": "s3cr3t"}},
        "metadata": {"owner": "me"},
        **extra,
    }


def test_job_rows_keep_submissions_running_first_then_newest() -> None:
    jobs = [
        _job("old", "SUCCEEDED", NOW - 900, NOW - 800),
        _job(None, "RUNNING", NOW - 50, kind="DRIVER"),  # a plain ray.init driver, e.g. a Tune script
        _job("new", "FAILED", NOW - 100, NOW - 90, message=RAY_FAILURE),
        _job("live", "RUNNING", NOW - 1000, job_id="03000000"),
    ]
    rows = job_rows(jobs, NOW)
    assert [row.submission_id for row in rows] == ["live", "new", "old"]
    assert rows[0].duration_s == 1000 and rows[0].job_id == "03000000" and rows[0].message is None
    assert rows[1].duration_s == 10
    assert rows[1].message == "Job entrypoint command failed with exit code 3: ValueError: --depth 7 is not 3n+4"
    assert "s3cr3t" not in json.dumps([row.__dict__ for row in rows])  # runtime envs are never copied


def test_secrets_in_entrypoints_are_masked() -> None:
    line = (
        "AWS_SECRET_ACCESS_KEY=abc123 WANDB_API_KEY=k1 python train.py --hf-token xyz --lr 0.1 "
        "--data s3://user:hunter2@host/bucket RAY_AUTH_TOKEN=t0k"
    )
    masked = mask_secrets(line)
    for secret in ("abc123", "k1", "xyz", "hunter2", "t0k"):
        assert secret not in masked
    assert "--lr 0.1" in masked and "s3://user:***@host/bucket" in masked and "AWS_SECRET_ACCESS_KEY=***" in masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('run password="x y" --lr 0.1', 'run password="***" --lr 0.1'),  # a quoted value, spaces and all
        ("token: 'abc'", "token: '***'"),
        ("api_key = 'a\\'b c' next", "api_key = '***' next"),  # an escaped quote inside
        ('--api-key "a b" --lr 1', '--api-key "***" --lr 1'),
        ('curl -H "Authorization: Bearer eyJh.bG-c_i0/+=" http://h', 'curl -H "Authorization: Bearer ***" http://h'),
        ("-H 'Authorization: Basic dXNlcjpwYXNz' http://h", "-H 'Authorization: Basic ***' http://h"),
        ("proxy-authorization=abc123 x", "proxy-authorization=*** x"),
        ("sent Bearer abc.def-123 to h", "sent Bearer *** to h"),
        ('{"aws_secret_access_key": "wJ/K7 MD", "region": "us"}', '{"aws_secret_access_key": "***", "region": "us"}'),
        ('{"password": "p@ss \\" word", "user": "me"}', '{"password": "***", "user": "me"}'),
        ('{"Authorization": "Bearer t0k3n", "Accept": "*/*"}', '{"Authorization": "Bearer ***", "Accept": "*/*"}'),
        ("{'token': 12345, 'x': 1}", "{'token': ***, 'x': 1}"),
        ("X-Api-Key: abc def", "X-Api-Key: *** def"),
        ("postgresql://user:hu@nter2@db:5432/mlflow", "postgresql://user:***@db:5432/mlflow"),
        ("redis://:s3cret@cache:6379", "redis://:***@cache:6379"),
        ("mysql+pymysql://u:p4ss@h/db", "mysql+pymysql://u:***@h/db"),
        # Left as they are: nothing secret.
        ("http://host:8265/api/jobs?mail=a@b", "http://host:8265/api/jobs?mail=a@b"),
        ("ValueError: --depth 7 is not 3n+4", "ValueError: --depth 7 is not 3n+4"),
        ('{"region": "us-east-1", "lr": 0.1}', '{"region": "us-east-1", "lr": 0.1}'),
        ("s3://bucket/runs/r --storage s3://b", "s3://bucket/runs/r --storage s3://b"),
    ],
)
def test_mask_secrets_masks_quoted_values_headers_json_keys_and_url_passwords(text, masked) -> None:
    assert mask_secrets(text) == masked
    assert mask_secrets(masked) == masked  # masking twice changes nothing


SECRET_NAMES = st.sampled_from(["password", "AWS_SECRET_ACCESS_KEY", "api-key", "hf_token", "client_secret"])


@given(name=SECRET_NAMES, value=st.text(min_size=1, max_size=40))
def test_any_value_of_a_secret_json_key_is_masked(name, value) -> None:
    text = json.dumps({"lr": 0.1, name: value, "region": "us-east-1"})
    assert mask_secrets(text) == json.dumps({"lr": 0.1, name: "***", "region": "us-east-1"})


@given(
    name=SECRET_NAMES,
    value=st.text(st.characters(blacklist_characters='"\\\n\r', blacklist_categories=["Cs"]), min_size=1),
    separator=st.sampled_from(["=", ": ", " = "]),
)
def test_any_double_quoted_value_of_a_secret_name_is_masked(name, value, separator) -> None:
    assert mask_secrets(f'run {name}{separator}"{value}" --lr 0.1') == f'run {name}{separator}"***" --lr 0.1'


@given(value=st.text(st.characters(whitelist_categories=["L", "N"], whitelist_characters="-._~+/"), min_size=1))
def test_any_bearer_token_and_url_password_is_masked(value) -> None:
    assert mask_secrets(f"Authorization: Bearer {value}\n") == "Authorization: Bearer ***\n"
    password = quote(value, safe="")
    assert mask_secrets(f"--data s3://me:{password}@host/b --lr 1") == "--data s3://me:***@host/b --lr 1"


def test_failure_line_and_shorten() -> None:
    assert failure_line(None) is None
    assert failure_line("Job was intentionally stopped.") == "Job was intentionally stopped."
    assert shorten("a  b\n c", 80) == "a b c"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"


def test_cluster_info_counts_alive_nodes_and_usage() -> None:
    nodes = [
        {"state": "ALIVE", "resources_total": {"CPU": 8.0, "GPU": 4.0}},
        {"state": "ALIVE", "resources_total": {"CPU": 2.0}},
        {"state": "DEAD", "resources_total": {"CPU": 64.0, "GPU": 8.0}},
    ]
    status = {"clusterStatus": {"loadMetricsReport": {"usage": {"CPU": [3.0, 10.0], "GPU": [2.0, 4.0]}}}}
    info = cluster_info("http://h:8265", {"ray_version": "2.60.0"}, nodes, status)
    assert (info.nodes_alive, info.nodes_dead, info.ray_version) == (2, 1, "2.60.0")
    assert (info.cpus_used, info.cpus_total, info.gpus_used, info.gpus_total) == (3.0, 10.0, 2.0, 4.0)
    bare = cluster_info("http://h:8265", None, nodes, None)  # no autoscaler report: totals from the nodes
    assert (bare.cpus_used, bare.cpus_total, bare.gpus_total) == (None, 10.0, 4.0)


def test_snapshot_json_carries_its_schema() -> None:
    snapshot = Snapshot(time=NOW, cluster=None, jobs=[], runs=[], sweeps=[], storage=["/x"], notes=["n"])
    document = json.loads(json.dumps(snapshot.to_json()))
    assert document == {
        "schema": SCHEMA,
        "time": NOW,
        "cluster": None,
        "jobs": [],
        "runs": [],
        "sweeps": [],
        "storage": ["/x"],
        "notes": ["n"],
    }
