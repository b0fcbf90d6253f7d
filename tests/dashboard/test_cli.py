"""``densenet-ray dashboard`` as a user runs it: storage alone, JSON, plain output off a terminal, bad input."""

from __future__ import annotations

import json

import pytest

from densenet_ray.cli import main
from densenet_ray.dashboard.snapshot import SCHEMA
from tests.dashboard.helpers import run_dashboard, write_run, write_sweep, write_tune_state


def _storage(tmp_path):
    import time

    now = time.time()
    root = tmp_path / "store"
    write_run(root / "runs", "bc40", epochs=3, errors=[0.6, 0.5, 0.42], last_time=now - 3600)
    sweep = write_sweep(root / "sweeps", "lr-sweep", ["lr"], [{"lr": 0.05}, {"lr": 0.1}])
    write_run(sweep / "trials", "train-a_00000", epochs=2, errors=[0.5, 0.3], last_time=now - 60, lr=0.05)
    write_tune_state(sweep, {"a_00000": ("TERMINATED", {"lr": 0.05}), "a_00001": ("PENDING", {"lr": 0.1})})
    return root


def _run(*args, **env):
    """The command with no Ray address, token or settings from the suite, in the Ray temp directory of
    :func:`no_cluster_here` (RAY_TMPDIR is kept)."""
    return run_dashboard(*args, keep=("RAY_TMPDIR",), **env)


@pytest.fixture(autouse=True)
def no_cluster_here(tmp_path, monkeypatch) -> None:
    """An empty Ray temp directory: no cluster recorded there and none running from it, so the dashboard finds no
    cluster on this machine by itself, whatever else runs on it (tests/dashboard/test_machine_states.py)."""
    (tmp_path / "no-ray").mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))


@pytest.mark.slow
def test_once_with_storage_and_no_cluster_prints_runs_and_sweeps_as_plain_text(tmp_path) -> None:
    root = _storage(tmp_path)
    done = _run("--once", "--storage", str(root))
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout  # piped: no ANSI escapes
    assert "storage only" in done.stdout and "bc40" in done.stdout and "FINISHED" in done.stdout
    assert "Sweep lr-sweep (custom, asha) RUNNING" in done.stdout and "1 FINISHED, 1 PENDING" in done.stdout.replace(
        "1 PENDING, 1 FINISHED", "1 FINISHED, 1 PENDING"
    )
    assert "BC L=16 k=12 lr=0.05" in done.stdout and "30.00" in done.stdout


@pytest.mark.slow
def test_off_a_terminal_one_plain_snapshot_unless_colour_is_forced(tmp_path) -> None:
    root = _storage(tmp_path)
    piped = _run("--no-cluster", "--storage", str(root))  # no --once: off a terminal it prints one snapshot anyway
    assert piped.returncode == 0 and "bc40" in piped.stdout and "\x1b[" not in piped.stdout
    assert "storage only (--no-cluster)" in piped.stdout
    colored = _run("--once", "--force-color", "--no-cluster", "--storage", str(root))
    assert colored.returncode == 0 and "\x1b[" in colored.stdout


@pytest.mark.slow
def test_json_snapshot_schema(tmp_path) -> None:
    done = _run("--json", "--no-cluster", "--storage", str(_storage(tmp_path)))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == SCHEMA and document["cluster"] is None and document["jobs"] == []
    assert set(document) == {"schema", "time", "cluster", "jobs", "runs", "sweeps", "storage", "notes"}
    runs = {run["name"]: run for run in document["runs"]}
    assert set(runs) == {"bc40", "train-a_00000"} and runs["train-a_00000"]["sweep"] == "lr-sweep"
    bc40 = runs["bc40"]
    assert (bc40["status"], bc40["epoch"], bc40["epochs"], bc40["best_test_error"]) == ("FINISHED", 3, 3, 0.42)
    assert bc40["error_history"] == [0.6, 0.5, 0.42] and isinstance(bc40["loss_history"][0], float)
    (sweep,) = document["sweeps"]
    assert (sweep["name"], sweep["best_trial"], sweep["best_options"]) == ("lr-sweep", "a_00000", {"lr": 0.05})
    assert {trial["trial_id"]: trial["status"] for trial in sweep["trials"]} == {
        "a_00000": "FINISHED",
        "a_00001": "PENDING",
    }


@pytest.mark.slow
def test_unreachable_address_is_one_line(tmp_path) -> None:
    done = _run("--once", "--address", "http://127.0.0.1:9")
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr == "error: cannot reach the Ray dashboard at http://127.0.0.1:9 ([Errno 111] Connection refused)\n"
    )
    from_env = _run("--json", RAY_ADDRESS="http://127.0.0.1:9")
    assert from_env.returncode == 1 and from_env.stderr.count("\n") == 1 and "127.0.0.1:9" in from_env.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0.5"], "--interval 0.5 is too short"),
        (["--limit", "0"], "--limit 0 must be at least 1"),
        (["--storage", "/no/such/dir"], "--storage /no/such/dir: no such directory"),
        (["--address", "ray://head:10001"], "--address ray://head:10001 is not a dashboard address"),
        (["--no-cluster"], "--no-cluster reads storage only: give --storage, and no --address"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys) -> None:
    assert main(["dashboard", "--once", *args]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


def test_json_and_colour_flags_are_parsed() -> None:
    from densenet_ray.cli import build_parser

    args = build_parser().parse_args(["dashboard", "--json", "--storage", "a", "--storage", "s3://b/p", "--no-color"])
    assert args.json and args.storage == ["a", "s3://b/p"] and args.no_color and args.interval == 2.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dashboard", "--force-color", "--no-color"])


@pytest.mark.slow
def test_nothing_to_show_is_one_line(tmp_path) -> None:
    done = _run("--once", HOME=str(tmp_path))  # no cluster here, no --storage, no ~/densenet-ray
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: no Ray cluster runs on this machine and no --storage was given")


@pytest.mark.slow
def test_empty_storage_is_one_line(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    done = _run("--once", "--no-cluster", "--storage", str(tmp_path / "empty"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"error: no training runs or sweeps under {tmp_path / 'empty'} (a run directory holds config.yaml and "
        "metrics.jsonl, a sweep's holds sweep.json)\n"
    )
