"""Every figure a run and ``evaluate`` report, computed again by scikit-learn from the same model's predictions.

Three real runs on photographs of the committed CIFAR-10 slice, each on 2 workers that evaluate unequal shares of the
test split (shards go to ranks in turn, and the shards are of unequal size): 10 classes with a weight average
(top-1, top-5, loss, their EMA twins, images/s and s/iter), 4 classes (per-class figures, no top-5) and multi-label
mosaics (AUROC, average precision, F1 at 0.5). The reference predictions come from the saved weights, run here over
the test shards read with :mod:`tarfile` and decoded with PIL: nothing of the project's loader or metrics.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special
from sklearn import metrics

from tests.cluster_helpers import BIN
from tests.train.run_helpers import epoch_records, small_run, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES = 10


def read_split(data: Path, split: str) -> list[tuple[bytes, int | tuple[int, ...]]]:
    """Every (image bytes, label) of ``split``'s shards, in shard order: ``cls`` is a class index, ``labels`` the
    comma-separated indices of a multi-label sample."""
    manifest = json.loads((data / f"{split}.json").read_text())
    samples = []
    for shard in manifest["shards"]:
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(data / shard["name"]) as archive:
            for member in archive.getmembers():
                key, _, extension = member.name.partition(".")
                members.setdefault(key, {})[extension] = archive.extractfile(member).read()
        for parts in members.values():
            image = next(value for extension, value in parts.items() if extension not in ("cls", "labels"))
            if "labels" in parts:
                samples.append((image, tuple(int(i) for i in parts["labels"].decode().split(",") if i)))
            else:
                samples.append((image, int(parts["cls"])))
    return samples


def reference_logits(run: Path, data: Path, weights: str | None = None) -> tuple[torch.Tensor, list]:
    """The saved model's logits for every test image, one image at a time, and the images' labels."""
    from PIL import Image

    import densenet_ray as dr

    classifier = dr.load(str(run), weights=weights)
    samples = read_split(data, "test")
    images = [classifier.prepare(Image.open(io.BytesIO(image)).convert("RGB")) for image, _ in samples]
    return classifier.logits(torch.stack(images)), [label for _, label in samples]


def rank_shares(data: Path, workers: int = 2) -> list[int]:
    """The test samples each rank evaluates: shard ``i`` goes to rank ``i % workers``."""
    shards = json.loads((data / "test.json").read_text())["shards"]
    return [sum(shard["samples"] for shard in shards[rank::workers]) for rank in range(workers)]


def cross_entropy(logits: torch.Tensor, labels: np.ndarray) -> float:
    """The mean cross entropy, by scipy (scikit-learn's ``log_loss`` clips probabilities)."""
    return float(-special.log_softmax(logits.double().numpy(), axis=1)[np.arange(len(labels)), labels].mean())


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory, cifar_shards, fixture_tar, module_cluster) -> tuple[Path, Path]:
    """1 epoch of BC-10 with a weight average on 2 workers; test shards of 60: ranks evaluate 260 and 240 images."""
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source

    root = tmp_path_factory.mktemp("figures")
    data = root / "shards"
    data.mkdir()
    for path in Path(cifar_shards).glob("train*"):
        shutil.copy(path, data / path.name)
    build_dataset(imagefolder_source(fixture_tar, split="test"), str(data), shard_size=60)
    args = small_run(str(data), root, depth=10, epochs=1, limit_train_batches=4, name="cifar", batch_size=20)
    completed = train(*args, "--ema", "0.5", "--precision", "fp32", "--no-compile")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root / "cifar", data


def test_a_runs_errors_and_loss_are_scikit_learns_on_its_saved_predictions(cifar_run) -> None:
    run, data = cifar_run
    assert rank_shares(data) == [260, 240]
    (record,) = epoch_records((run / "metrics.jsonl").read_text())
    for prefix, weights in (("", "raw"), ("ema_", "ema")):
        logits, labels = reference_logits(run, data, weights)
        truth = np.array(labels)
        assert record["test_samples"] == len(truth) == 500
        accuracy = metrics.accuracy_score(truth, logits.argmax(1).numpy())
        top5 = metrics.top_k_accuracy_score(truth, logits.numpy(), k=5, labels=list(range(CLASSES)))
        assert record[f"{prefix}test_error"] == pytest.approx(1 - accuracy, abs=1e-9)
        assert record[f"{prefix}test_top5_error"] == pytest.approx(1 - top5, abs=1e-9)
        assert record[f"{prefix}test_loss"] == pytest.approx(cross_entropy(logits, truth), rel=1e-5)


def test_images_per_second_and_seconds_per_iteration_count_the_images_trained(cifar_run) -> None:
    """4 steps of a global batch of 20: 80 images in the epoch's training time."""
    run, _ = cifar_run
    (record,) = epoch_records((run / "metrics.jsonl").read_text())
    assert record["images_per_s"] * record["epoch_seconds"] == pytest.approx(80, rel=1e-9)
    assert record["seconds_per_iteration"] * 4 == pytest.approx(record["epoch_seconds"], rel=1e-9)


def test_evaluate_per_class_is_scikit_learns_report_and_confusion_matrix(cifar_run) -> None:
    run, data = cifar_run
    completed = subprocess.run(
        [str(BIN / "densenet-ray"), "evaluate", str(run), "--per-class", "--json", "--loader-workers", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    logits, labels = reference_logits(run, data)
    truth, predicted = np.array(labels), logits.argmax(1).numpy()
    indices = list(range(CLASSES))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predicted, labels=indices, zero_division=0
    )
    rows = result["per_class"]
    assert [row["support"] for row in rows] == support.tolist()
    for name, expected in (("precision", precision), ("recall", recall), ("f1", f1)):
        assert [row[name] for row in rows] == pytest.approx(expected.tolist(), abs=1e-6), name
    matrix = metrics.confusion_matrix(truth, predicted, labels=indices)
    assert result["confusion_matrix"] == matrix.tolist()
    names = [row["name"] for row in rows]
    cells = sorted((-matrix[t, p], t, p) for t in indices for p in indices if t != p and matrix[t, p])[:10]
    assert result["confusions"] == [[names[t], names[p], int(-count)] for count, t, p in cells]
    assert result["top1_error"] == pytest.approx(1 - metrics.accuracy_score(truth, predicted), abs=1e-9)
    assert result["loss"] == pytest.approx(cross_entropy(logits, truth), rel=1e-5)


def _write_four_class_folder(fixture_tar: str, root: Path) -> Path:
    from tests.data.sources_fixtures import fixture_images

    for cls, name, data in fixture_images(fixture_tar):
        if cls in ("airplane", "cat", "ship", "truck"):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / name).write_bytes(data)
    return root


def test_evaluate_per_class_on_an_own_four_class_folder_prints_f1_as_2pr_over_p_plus_r(
    tmp_path, fixture_tar, module_cluster
) -> None:
    from densenet_ray.cli import main

    photos, data = _write_four_class_folder(fixture_tar, tmp_path / "photos"), tmp_path / "shards"
    build = ["data", "build", "imagefolder", "--source", str(photos), "--out", str(data), "--holdout-per-class", "13"]
    assert main([*build, "--shard-size", "15"]) == 0
    assert rank_shares(data) == [30, 22]
    args = small_run(str(data), tmp_path, depth=10, epochs=1, limit_train_batches=2, name="four", batch_size=20)
    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray.images", *args, "--precision", "fp32", "--no-compile"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (record,) = epoch_records((tmp_path / "four" / "metrics.jsonl").read_text())
    assert record["test_top5_error"] is None and "top-5" not in completed.stdout  # 4 classes: every label in the top 5
    printed = subprocess.run(
        [str(BIN / "densenet-ray"), "evaluate", str(tmp_path / "four"), "--per-class", "--loader-workers", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "top-5" not in printed.stdout
    logits, labels = reference_logits(tmp_path / "four", data)
    truth, predicted = np.array(labels), logits.argmax(1).numpy()
    f1 = metrics.f1_score(truth, predicted, labels=[0, 1, 2, 3], average=None, zero_division=0)
    classes = json.loads((data / "train.json").read_text())["classes"]
    row = r"^(\w+)\s+([\d.]+) %\s+([\d.]+) %\s+([\d.]+) %\s+\d+$"
    rows = {found[0]: found[1:] for found in re.findall(row, printed.stdout, re.M)}
    assert list(rows) == classes, printed.stdout
    for name, expected in zip(classes, f1, strict=True):
        p, r, shown = (float(value) / 100 for value in rows[name])
        assert shown == pytest.approx(expected, abs=0.0006)  # printed to 0.1 %
        assert shown == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=0.0012)


def test_a_multi_label_runs_auroc_average_precision_and_f1_are_scikit_learns(tmp_path, fixture_tar, module_cluster):
    """Mosaics of two photographs labelled with both classes; 30 test samples in shards of 7: ranks get 16 and 14."""
    import densenet_ray as dr
    from densenet_ray.cli import main
    from tests.data.own_images import write_pairs_list

    listing = write_pairs_list(fixture_tar, tmp_path / "pairs", count=30)
    data = tmp_path / "shards"
    for split in ("train", "test"):
        argv = ["data", "build", "csv", "--source", str(listing), "--root", str(listing.parent / "images")]
        argv += ["--path-column", "file", "--label-column", "findings", "--label-separator", "|", "--shard-size", "7"]
        assert main([*argv, "--split", split, "--out", str(data)]) == 0
    assert rank_shares(data) == [16, 14]
    args = small_run(str(data), tmp_path, depth=10, epochs=2, limit_train_batches=2, name="ml", batch_size=10)
    args += ["--precision", "fp32", "--no-compile", "--pos-weight", "balanced"]
    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray.images", *args], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = epoch_records((tmp_path / "ml" / "metrics.jsonl").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and all(r["test_samples"] == 30 for r in records)
    record = records[-1]
    assert record["test_error"] == pytest.approx(1 - record["test_auroc"]) and record["test_top5_error"] is None

    classes = json.loads((data / "train.json").read_text())["classes"]
    logits, labels = reference_logits(tmp_path / "ml", data)
    truth = np.zeros((len(labels), len(classes)), dtype=int)
    for row, indices in enumerate(labels):
        truth[row, list(indices)] = 1
    scores = torch.sigmoid(logits).numpy()
    ranked = [c for c in range(len(classes)) if 0 < truth[:, c].sum() < len(truth)]
    auroc = {classes[c]: metrics.roc_auc_score(truth[:, c], scores[:, c]) for c in ranked}
    precision_at = [metrics.average_precision_score(truth[:, c], scores[:, c]) for c in ranked]
    assert {k: v for k, v in record["test_auroc_by_class"].items() if v is not None} == pytest.approx(auroc, abs=1e-5)
    assert record["test_auroc"] == pytest.approx(np.mean(list(auroc.values())), abs=1e-5)
    assert record["test_map"] == pytest.approx(np.mean(precision_at), abs=1e-5)
    predicted = (scores >= 0.5).astype(int)
    assert record["test_f1"] == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro", zero_division=0), abs=1e-6
    )
    loss = metrics.log_loss(truth.ravel(), scores.ravel(), labels=[0, 1]) * len(classes)  # summed over classes
    assert record["test_loss"] == pytest.approx(loss, rel=1e-4)

    single = dr.evaluate(str(tmp_path / "ml"), loader_workers=0, batch_size=7, precision="fp32", per_class=True)
    assert single["samples"] == 30 and single["auroc"] == pytest.approx(record["test_auroc"], abs=1e-6)
    rows = single["per_class"]
    for name, expected in (
        ("precision", metrics.precision_score(truth, predicted, average=None, zero_division=0)),
        ("recall", metrics.recall_score(truth, predicted, average=None, zero_division=0)),
        ("f1", metrics.f1_score(truth, predicted, average=None, zero_division=0)),
    ):
        assert [row[name] for row in rows] == pytest.approx(expected.tolist(), abs=1e-6), name
    assert [row["support"] for row in rows] == truth.sum(0).tolist()
    (prediction,) = dr.load(str(tmp_path / "ml")).predict([str(listing.parent / "images" / "pair000.png")], top=10)
    assert sum(p for _, p in prediction.top) != pytest.approx(1.0)  # each class's own sigmoid, not a softmax
