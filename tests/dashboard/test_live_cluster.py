"""The dashboard against a real ``ray start --head`` (token auth on, Train run state on) running a real training job,
a real sweep and a failing job."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from densenet_ray.dashboard.poll import Poller
from tests.cluster_helpers import BIN, DEFAULT_TRAIN_POLL, ray_env, ray_head

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("dash-secret-in-runtime-env", "dash-secret-in-entrypoint")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _submit(head, submission_id: str, entrypoint: list[str], runtime_env: dict | None = None) -> None:
    command = [str(BIN / "ray"), "job", "submit", "--no-wait", "--address", head.address, "--working-dir", str(ROOT)]
    command += ["--submission-id", submission_id]
    if runtime_env:
        command += ["--runtime-env-json", json.dumps(runtime_env)]
    done = subprocess.run(
        [*command, "--", *entrypoint], capture_output=True, text=True, env=ray_env(RAY_AUTH_MODE="token"), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _dashboard(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "densenet-ray"), "dashboard", *args],
        capture_output=True,
        text=True,
        env=ray_env(COLUMNS="220", **env),
        timeout=120,
    )


def test_dashboard_follows_a_live_clusters_job_run_and_sweep(cifar_shards, tmp_path) -> None:
    runs, sweeps, space = tmp_path / "runs", tmp_path / "sweeps", tmp_path / "space.yaml"
    space.write_text("options:\n  depth: 16\nspace:\n  lr: {grid: [0.05, 0.1]}\n")
    common = ["--data", cifar_shards, "--batch-size", "25", "--loader-workers", "0", "--limit-eval-batches", "2"]
    train = ["env", f"DASH_API_TOKEN={SECRETS[1]}", "python", "-m", "densenet_ray.cifar", "--workers", "1"]
    train += ["--depth", "16", "--epochs", "3", "--limit-train-batches", "12", "--storage", str(runs), "--name", "r1"]
    sweep = ["densenet-ray", "tune", "custom", "--space", str(space), "--epochs", "2", "--limit-train-batches", "4"]
    sweep += ["--storage", str(sweeps), "--name", "lr-sweep"]
    failing = ["python", "-c", "import sys; sys.exit('bad config: --depth 7 is not 3n+4')"]

    # Ray Train's default poll paces the runs, so the dashboard sees them running.
    with ray_head(tmp_path, num_cpus=4, RAY_TRAIN_ENABLE_STATE_TRACKING="1", **DEFAULT_TRAIN_POLL) as head:
        _submit(head, "train-1", train + common, {"env_vars": {"AWS_SECRET_ACCESS_KEY": SECRETS[0]}})
        _submit(head, "sweep-1", sweep + common)
        _submit(head, "broken-1", failing)

        poller, seen = Poller(head.address, []), set()
        poller.poll(strict=True)  # reachable, and the token is accepted
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            snapshot = poller.poll()  # a busy 2-core head may be slow on one endpoint: a note, not a failure
            jobs = {job.submission_id: job.status for job in snapshot.jobs}
            for run in snapshot.runs:
                seen.add((run.name, run.status, run.job))
            for found in snapshot.sweeps:
                seen.add((found.name, found.status))
            if len(jobs) == 3 and set(jobs.values()) <= TERMINAL:
                break
            time.sleep(1.0)
        assert jobs == {"train-1": "SUCCEEDED", "sweep-1": "SUCCEEDED", "broken-1": "FAILED"}, jobs
        # Seen while running: the job's Train run, joined with its job, and the sweep in progress.
        assert ("r1", "RUNNING", "train-1") in seen, sorted(seen)
        assert ("lr-sweep", "RUNNING") in seen, sorted(seen)

        done = _dashboard("--json", "--address", head.address)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["cluster"]["nodes_alive"] == 1 and document["cluster"]["cpus_total"] == 4.0
        assert document["cluster"]["train_state"] is True and document["notes"] == []
        jobs = {job["submission_id"]: job for job in document["jobs"]}
        assert "bad config: --depth 7 is not 3n+4" in jobs["broken-1"]["message"]
        assert jobs["train-1"]["entrypoint"].startswith("env DASH_API_TOKEN=*** python -m densenet_ray.cifar")
        run = next(run for run in document["runs"] if run["name"] == "r1")
        assert (run["status"], run["status_source"], run["epoch"], run["epochs"], run["job"]) == (
            "FINISHED",
            "train",
            3,
            3,
            "train-1",
        )
        assert len(run["error_history"]) == 3 and run["best_test_error"] == min(run["error_history"])
        assert (run["attempts"], run["restarts"], run["progress"]) == (1, 0, 1.0)
        (found,) = document["sweeps"]
        assert found["status"] == "FINISHED" and found["counts"] == {"FINISHED": 2}
        assert found["best_trial"] and found["best_options"]["lr"] in (0.05, 0.1)
        trials = [run for run in document["runs"] if run["sweep"] == "lr-sweep"]
        assert len(trials) == 2 and all(trial["status"] == "FINISHED" for trial in trials)

        # No address: the cluster recorded in Ray's temp directory (the head's, as /tmp/ray is a head's started with
        # the default), its token at RAY_AUTH_TOKEN_PATH.
        local = _dashboard("--once", RAY_TMPDIR=str(head.ray_tmpdir))
        assert local.returncode == 0, local.stderr
        assert "\x1b[" not in local.stdout and f"cluster {head.address}" in local.stdout
        for text in ("train-1", "SUCCEEDED", "broken-1", "FAILED", "r1", "Sweep lr-sweep (custom, fifo) FINISHED"):
            assert text in local.stdout
        for secret in SECRETS:
            assert secret not in done.stdout + local.stdout

        wrong = _dashboard("--once", "--address", head.address, RAY_AUTH_TOKEN="not-the-token")
        assert wrong.returncode == 1 and wrong.stdout == "" and wrong.stderr.count("\n") == 1
        assert "rejected the token from RAY_AUTH_TOKEN" in wrong.stderr and "not-the-token" not in wrong.stderr
        missing = _dashboard("--once", "--address", head.address, RAY_AUTH_MODE="disabled")
        assert missing.returncode == 1 and missing.stderr.startswith("error: the Ray dashboard at")
        assert "needs a token (HTTP 401)" in missing.stderr and missing.stderr.count("\n") == 1
