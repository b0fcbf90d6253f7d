"""Run identity, the run lease and the storage compare-and-swap under them, on local disk and on S3 (moto's HTTP
server), plus housekeeping that never fails a run."""

from __future__ import annotations

import json
import threading
import time

import pytest

from densenet_ray.data.storage import open_storage
from densenet_ray.errors import UserError
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.run.directory import LEASE_FILE, SNAPSHOT_FILE, RunDirectory, clean_up
from densenet_ray.train.run.guard import Lease, RunInUse, check_identity, run_identity


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> RunDirectory:
    if request.param == "local":
        return RunDirectory(str(tmp_path / "run"))
    bucket = request.getfixturevalue("bucket")
    return RunDirectory(f"s3://{bucket}/runs/run")


def test_write_if_is_a_compare_and_swap(run) -> None:
    storage = run.storage
    assert storage.read_versioned("x.json") is None
    assert storage.write_if("x.json", b"one", None)
    assert not storage.write_if("x.json", b"two", None)  # exists already
    data, version = storage.read_versioned("x.json")
    assert data == b"one"
    assert storage.write_if("x.json", b"three", version)
    assert not storage.write_if("x.json", b"four", version)  # that version is gone
    assert storage.read_versioned("x.json")[0] == b"three"


def test_concurrent_creators_one_wins(run) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def create(index: int) -> None:
        barrier.wait()
        results.append(run.storage.write_if("y.json", str(index).encode(), None))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]


def test_a_live_lease_refuses_a_second_driver_and_a_lapsed_one_does_not(run) -> None:
    first = Lease(run, seconds=30)
    first.acquire()
    holder = json.loads(run.storage.read_bytes(LEASE_FILE))
    assert holder["owner"] == first.owner and holder["expires"] > time.time() + 25
    with pytest.raises(RunInUse, match=r"is in use by pid \d+ on .*; wait for it to end, or use another --name"):
        Lease(run).acquire()
    first.release()
    assert not run.storage.exists(LEASE_FILE)
    lapsed = Lease(run, seconds=0.2)
    lapsed.acquire()
    time.sleep(0.3)  # its driver died: nobody renews it
    successor = Lease(run)
    successor.acquire()
    assert json.loads(run.storage.read_bytes(LEASE_FILE))["owner"] == successor.owner
    lapsed.release()  # no longer ours: left alone
    assert json.loads(run.storage.read_bytes(LEASE_FILE))["owner"] == successor.owner
    successor.release()


def test_a_lease_of_a_dead_process_on_this_machine_has_lapsed(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    run = RunDirectory(str(tmp_path / "run"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = {"owner": "killed", "host": socket.gethostname(), "pid": int(dead.stdout), "expires": time.time() + 60}
    run.storage.write_bytes(LEASE_FILE, json.dumps(holder).encode())
    Lease(run).acquire()  # its process is gone: no need to wait for the expiry
    elsewhere = {**holder, "owner": "remote", "host": "another-host"}
    run.storage.write_bytes(LEASE_FILE, json.dumps(elsewhere).encode())
    with pytest.raises(RunInUse):
        Lease(run).acquire()  # another machine's driver: only its expiry says it is gone


def test_renewal_keeps_the_lease_alive(tmp_path) -> None:
    run = RunDirectory(str(tmp_path / "run"))
    lease = Lease(run, seconds=0.6)
    lease.acquire()
    lease.start_renewing()
    time.sleep(1.0)  # longer than the lease: only renewal keeps it
    with pytest.raises(RunInUse):
        Lease(run).acquire()
    lease.release()


def test_identity_names_the_options_that_change_the_computation() -> None:
    base = resolve(TrainConfig(depth=16, name="r", epochs=2))
    saved = run_identity(base, "abc")
    check_identity(saved, run_identity(resolve(TrainConfig(depth=16, name="r", epochs=9, max_failures=3)), "abc"), "r")
    check_identity(None, saved, "r")
    with pytest.raises(UserError) as raised:
        check_identity(saved, run_identity(resolve(TrainConfig(depth=40, lr=0.05, name="r")), "abc"), "r")
    assert str(raised.value) == (
        "run 'r' exists with other options that change what it computes: --depth 16 (now 40), --lr 0.1 (now 0.05); "
        "resume it with its own options, or start a new run with another --name"
    )
    with pytest.raises(UserError, match="its training shards"):
        check_identity(saved, run_identity(base, "rebuilt"), "r")


def test_cleanup_problems_are_one_warning_line(tmp_path) -> None:
    run = RunDirectory(str(tmp_path))
    (tmp_path / "checkpoint_a").mkdir()
    (tmp_path / "checkpoint_a" / "state.pt").write_bytes(b"x")
    (tmp_path / "checkpoint_b").mkdir()
    (tmp_path / "checkpoint_b" / "state.pt").write_bytes(b"x")
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_a"}]}))
    lines: list[str] = []
    clean_up(run, lines.append)
    assert lines == ["removed 1 checkpoint(s) Ray never committed: checkpoint_b"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["checkpoint_a"]
    (tmp_path / SNAPSHOT_FILE).write_text("{not json")
    lines.clear()
    clean_up(run, lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"warning: could not clean up {tmp_path} (JSONDecodeError: ")
    assert lines[0].endswith("the run is unaffected")
    assert RunDirectory(str(tmp_path / "missing")).remove_orphan_checkpoints() == []


def test_records_round_trip_and_torn_lines_are_skipped(tmp_path) -> None:
    from densenet_ray.train.run.directory import EpochRecord, MidEpochRecord

    run = RunDirectory(str(tmp_path))
    run.append(EpochRecord(epoch=1, epochs=2, step=10, loss=2.0, test_error=0.5))
    run.append(MidEpochRecord(epoch=1, step=13, loss=1.9))
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "lo')
    epochs, mid = run.metrics()
    assert [(r.epoch, r.step, r.test_error) for r in epochs] == [(1, 10, 0.5)] and epochs[0].time is not None
    assert [(r.epoch, r.step, r.mid_epoch) for r in mid] == [(1, 13, True)]
    assert open_storage(str(tmp_path)).exists("metrics.jsonl")
