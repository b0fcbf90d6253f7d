"""Joining the cluster's view (job and Train V2 run API answers, in their real shapes) with storage."""

from __future__ import annotations

import pytest

from densenet_ray.dashboard.client import ClusterError
from densenet_ray.dashboard.poll import Poller, train_run_dir, train_run_row
from densenet_ray.data.storage import StorageError
from tests.dashboard.helpers import NOW, write_run, write_sweep


def _train_run(name, storage, status="RUNNING", attempts=1, alive=2, job_id="03000000"):
    workers = [{"world_rank": rank, "status": "ALIVE" if rank < alive else "DEAD"} for rank in range(2)]
    return {
        "id": f"id-{name}",
        "name": name,
        "job_id": job_id,
        "status": status,
        "status_detail": None,
        "run_settings": {
            "train_loop_config": {"model": "densenet_bc100_k12", "epochs": 4, "storage": storage, "name": name},
            "run_config": {"name": name, "storage_path": storage, "storage_filesystem": None},
        },
        "attempts": [{"attempt_id": str(index), "status": "RUNNING", "workers": workers} for index in range(attempts)],
    }


class FakeClient:
    """Answers as a Ray 2.60 dashboard does (the shapes recorded from a live one)."""

    address = "http://127.0.0.1:8265"

    def __init__(self, runs, fail=None, runs_fail=None):
        self.runs, self.fail, self.runs_fail = runs, fail, runs_fail

    def version(self):
        if self.fail:
            raise ClusterError(self.fail)
        return {"ray_version": "2.60.0"}

    def nodes(self):
        return [{"state": "ALIVE", "resources_total": {"CPU": 4.0}}]

    def cluster_status(self):
        return {"clusterStatus": {"loadMetricsReport": {"usage": {"CPU": [2.0, 4.0]}}}}

    def jobs(self):
        return [
            {
                "type": "SUBMISSION",
                "submission_id": "train-1",
                "job_id": "03000000",
                "status": "RUNNING",
                "entrypoint": "python -m densenet_ray.cifar",
                "start_time": (NOW - 60) * 1000,
            }
        ]

    def train_runs(self):
        if self.runs_fail:
            raise ClusterError(self.runs_fail)
        return self.runs


def _poller(client, roots=()):
    poller = Poller(None, list(roots))
    poller.client = client
    return poller


def test_train_run_dir_prefers_our_config_then_rays_local_path() -> None:
    run = _train_run("r", "s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http")
    assert train_run_dir(run) == "s3://bucket/runs/r?endpoint_override=127.0.0.1:9000&scheme=http"
    run = _train_run("r", "relative/runs")  # as typed in a job's working directory: Ray's absolute path is used
    run["run_settings"]["run_config"]["storage_path"] = "/abs/runs"
    assert train_run_dir(run) == "/abs/runs/r"
    run["run_settings"]["run_config"].update(storage_path="bucket/runs", storage_filesystem="S3FileSystem")
    assert train_run_dir(run) is None  # a bucket-relative path: only our config could say where it is


def test_train_run_row_counts_attempts_and_live_workers() -> None:
    from densenet_ray.dashboard.snapshot import JobRow

    job = JobRow(submission_id="train-1", status="RUNNING", entrypoint="", job_id="03000000")
    row = train_run_row(_train_run("r", "/runs", attempts=3, alive=1), {"03000000": job})
    assert (row.status, row.attempts, row.restarts, row.workers_alive, row.workers) == ("RUNNING", 3, 2, 1, 2)
    assert (row.job, row.epochs, row.status_source) == ("train-1", 4, "train")


def test_the_launchers_grouped_config_gives_the_model_epochs_and_run_directory() -> None:
    from densenet_ray.train.config.options import TrainConfig
    from densenet_ray.train.config.resolved import resolve

    config = resolve(TrainConfig(depth=16, epochs=7, storage="s3://bucket/runs", name="r"), check_weights=False)
    run = _train_run("r", "s3://bucket/runs")
    run["run_settings"]["train_loop_config"] = config.to_document()  # what the launcher hands TorchTrainer
    row = train_run_row(run, {})
    assert (row.model, row.epochs, row.run_dir) == ("densenet_bc100_k12", 7, "s3://bucket/runs/r")
    run["run_settings"]["train_loop_config"] = {"model": {"name": 3}, "optim": {}}  # not ours: Ray's view alone
    assert (train_run_row(run, {}).model, train_run_row(run, {}).epochs) == (None, None)


def test_cluster_runs_are_joined_with_their_files_found_through_the_cluster(tmp_path) -> None:
    runs_root = tmp_path / "runs"
    write_run(runs_root, "joined", epochs=4, errors=[0.5, 0.4], last_time=NOW - 10)
    snapshot = _poller(
        FakeClient(
            [
                _train_run("joined", str(runs_root), attempts=2),
                _train_run("elsewhere", "/not/on/this/machine", status="PENDING"),
            ]
        )
    ).poll()
    by_name = {run.name: run for run in snapshot.runs}
    joined = by_name["joined"]
    assert (joined.status, joined.status_source, joined.epoch, joined.restarts, joined.job) == (
        "RUNNING",
        "train",
        2,
        1,
        "train-1",
    )
    assert joined.error_history == [0.5, 0.4]
    elsewhere = by_name["elsewhere"]  # its directory cannot be read here: the cluster's view alone
    assert (elsewhere.status, elsewhere.epoch, elsewhere.error_history) == ("PENDING", 0, [])
    assert str(runs_root) in snapshot.storage
    assert snapshot.cluster.cpus_used == 2.0 and [job.submission_id for job in snapshot.jobs] == ["train-1"]


def test_a_sweep_is_found_from_its_trials_runs_without_storage(tmp_path) -> None:
    sweep = write_sweep(tmp_path, "sw", ["lr"], [{"lr": 0.1}])
    write_run(sweep / "trials", "train-x_00000", epochs=2, errors=[0.6], last_time=NOW - 5, lr=0.1)
    snapshot = _poller(FakeClient([_train_run("train-x_00000", str(sweep / "trials"))])).poll()
    assert [s.name for s in snapshot.sweeps] == ["sw"] and snapshot.sweeps[0].trials[0].status == "RUNNING"
    assert [run.sweep for run in snapshot.runs] == ["sw"]  # the trial's run belongs to its sweep
    assert snapshot.storage == [str(sweep)]


def test_state_tracking_off_and_unreadable_cluster_become_notes(tmp_path) -> None:
    write_run(tmp_path, "r", epochs=2, errors=[0.5], last_time=NOW)
    snapshot = _poller(FakeClient(None), [str(tmp_path)]).poll()
    assert snapshot.cluster is not None and not snapshot.cluster.train_state
    assert any("RAY_TRAIN_ENABLE_STATE_TRACKING=1" in note for note in snapshot.notes)
    down = _poller(FakeClient([], fail="cannot reach the Ray dashboard at http://127.0.0.1:8265"), [str(tmp_path)])
    snapshot = down.poll()
    assert snapshot.cluster is None and snapshot.notes == ["cannot reach the Ray dashboard at http://127.0.0.1:8265"]
    assert [run.name for run in snapshot.runs] == ["r"]  # storage still shown while the cluster is away
    with pytest.raises(ClusterError):
        down.poll(strict=True)
    slow = _poller(FakeClient([], runs_fail="http://127.0.0.1:8265/api/train/v2/runs/v1: timed out"), [str(tmp_path)])
    snapshot = slow.poll(strict=True)  # one endpoint failing after the head answered: a note, not an error
    assert snapshot.cluster is not None and not snapshot.cluster.train_state
    assert snapshot.notes == ["http://127.0.0.1:8265/api/train/v2/runs/v1: timed out"]
    assert [job.submission_id for job in snapshot.jobs] == ["train-1"] and [run.name for run in snapshot.runs] == ["r"]


def test_unreadable_storage_is_an_error_first_then_a_note(tmp_path) -> None:
    poller = Poller(None, ["s3://no-such-bucket-for-dashboard/x?endpoint_override=127.0.0.1:9&scheme=http"])
    with pytest.raises(StorageError, match="--storage s3://no-such-bucket-for-dashboard"):
        poller.poll(strict=True)
    assert "cannot read storage" in poller.poll().notes[0]


@pytest.mark.integration
def test_runs_and_sweeps_are_read_from_s3(tmp_path, bucket) -> None:
    from densenet_ray.data.storage import open_storage

    local = tmp_path / "local"
    write_run(local / "runs", "on-s3", epochs=2, errors=[0.5, 0.45], last_time=NOW)
    sweep = write_sweep(local / "sweeps", "sw", ["lr"], [{"lr": 0.1}])
    write_run(sweep / "trials", "train-b_00000", epochs=2, errors=[0.4], last_time=NOW - 1, lr=0.1)
    storage = open_storage(f"s3://{bucket}/team")
    for path in local.rglob("*"):
        if path.is_file():
            storage.write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
    poller = Poller(None, [f"s3://{bucket}/team"])
    snapshot = poller.poll(strict=True)
    (run,) = [run for run in snapshot.runs if run.sweep is None]
    assert (run.name, run.run_dir, run.epoch, run.status) == ("on-s3", f"s3://{bucket}/team/runs/on-s3", 2, "FINISHED")
    assert [s.name for s in snapshot.sweeps] == ["sw"] and snapshot.sweeps[0].trials[0].best_test_error == 0.4
    reads = []
    original = poller.scanners[f"s3://{bucket}/team"].storage.read_bytes
    poller.scanners[f"s3://{bucket}/team"].storage.read_bytes = lambda name: reads.append(name) or original(name)
    poller.poll()
    assert reads == []  # nothing changed on S3: one listing, no object read
