"""`ray job submit -- python -m densenet_ray.cifar` against a real `ray start --head` on 127.0.0.1, token auth on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cluster_helpers import BIN, _descendants, ray_env, ray_head

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_job_submission_with_token_auth(cifar_shards, tmp_path, ray_auth_token) -> None:
    runs = tmp_path / "runs"
    with ray_head(tmp_path, RAY_AUTH_MODE="token") as head:
        family = _descendants(head.process.pid)
        assert family, "ray start --block started no processes"
        # One worker, one training and one evaluation batch of BC-10: what the job trains does not change how it is
        # submitted, run and reported.
        entrypoint = ["python", "-m", "densenet_ray.cifar", "--data", cifar_shards, "--workers", "1"]
        entrypoint += ["--batch-size", "50", "--depth", "10", "--epochs", "1", "--limit-train-batches", "1"]
        entrypoint += ["--limit-eval-batches", "1", "--loader-workers", "0", "--storage", str(runs), "--name", "job1"]
        submit = [str(BIN / "ray"), "job", "submit", "--address", head.address, "--working-dir", str(ROOT)]
        submit += ["--submission-id", "densenet-job-1", "--", *entrypoint]

        refused = subprocess.run(submit, capture_output=True, text=True, env=ray_env(RAY_AUTH_MODE="disabled"))
        assert refused.returncode != 0  # token auth is really on: a client without the token is turned away
        assert "auth" in (refused.stdout + refused.stderr).lower()

        completed = subprocess.run(
            submit, capture_output=True, text=True, env=ray_env(RAY_AUTH_MODE="token"), timeout=600
        )
        assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
        assert "densenet-ray run summary" in completed.stdout  # the job's logs are tailed back
        from ray.job_submission import JobStatus, JobSubmissionClient

        # The SDK sends the token only when told to; in this process Ray's auth mode was read at import, so pass
        # the header itself (the token is the one `ray start` used, never printed).
        token = ray_auth_token.read_text().strip()
        client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {token}"})
        assert client.get_job_status("densenet-job-1") == JobStatus.SUCCEEDED
        info = client.get_job_info("densenet-job-1")
        assert info.entrypoint.startswith("python -m densenet_ray.cifar") and "AWS_SECRET" not in str(info.runtime_env)
    records = [json.loads(line) for line in (runs / "job1" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 1 and (runs / "job1" / "config.yaml").exists()
    assert not [pid for pid in family if Path(f"/proc/{pid}/stat").exists() and " Z " not in _stat(pid)]


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return " Z "
