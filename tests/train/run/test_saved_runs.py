"""Runs written by earlier versions: the committed run directory from main at 9912cdd (``tests/fixtures/runs``)
shows on the dashboard and resumes under today's code to the figures that commit itself resumed it to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from densenet_ray.dashboard.runs import StorageScanner, run_row
from tests.train.run_helpers import epoch_records, train

SAVED = Path(__file__).resolve().parents[2] / "fixtures" / "runs"
NAME = "run-from-9912cdd"
# That commit resumed the run (its second epoch) to loss 2.3303627, test loss 2.3076411 and test error 0.94, both
# steps at lr 0.001: its step rule divided a 2-epoch run by 100 from the second epoch's start. A 2-epoch step schedule
# now divides at 50 % and 75 % of its 4 steps, so the resumed epoch's two steps run at 0.01 and 0.001; these are the
# figures of that resume, on an AMD EPYC (fp32 eager on another CPU may differ in the last digits, never by 1e-4).
RESUMED = {"loss": 2.3294483184814454, "test_loss": 2.3067034912109374, "test_error": 0.94, "lr": 0.001}
RESUMED_MEAN_LR = (0.01 + 0.001) / 2


def _row(root: Path):
    scanner = StorageScanner(str(root))
    layout = scanner.layout()
    return run_row(scanner.read_run(NAME, layout.sizes), NAME)


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_written_by_9912cdd_shows_on_the_dashboard_and_resumes(tmp_path, cifar_shards) -> None:
    root = tmp_path / "runs"
    shutil.copytree(SAVED, root)
    before = _row(root)
    assert (before.model, before.epoch, before.epochs, before.status) == ("BC L=10 k=12", 1, 1, "FINISHED")
    assert before.test_error == pytest.approx(0.98)
    args = ["--data", cifar_shards, "--workers", "1", "--batch-size", "50", "--depth", "10", "--epochs", "2"]
    args += ["--limit-train-batches", "2", "--limit-eval-batches", "1", "--loader-workers", "0", "--no-compile"]
    args += ["--precision", "fp32", "--keep-checkpoints", "1", "--storage", str(root), "--name", NAME, "--local"]
    completed = train(*args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "resumed on 1 worker(s) at the start of epoch 2" in completed.stdout + completed.stderr
    records = epoch_records((root / NAME / "metrics.jsonl").read_text())
    assert [record["epoch"] for record in records] == [1, 2]
    assert {key: records[1][key] for key in RESUMED} == pytest.approx(RESUMED, abs=1e-4)
    assert records[1]["mean_lr"] == pytest.approx(RESUMED_MEAN_LR)
    after = _row(root)
    assert (after.epoch, after.epochs, after.status, after.test_error) == (2, 2, "FINISHED", pytest.approx(0.94))
    changed = train(*args, "--depth", "16")
    assert changed.returncode == 1 and "--depth 10 (now 16)" in changed.stderr
