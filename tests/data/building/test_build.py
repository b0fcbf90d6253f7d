"""``densenet-ray data build / inspect / verify`` on real CIFAR-10 images, local and on S3."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densenet_ray.cli import main
from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import cifar_source, imagefolder_source, svhn_source
from densenet_ray.data.format.manifest import load_manifest
from tests.data.sources_fixtures import (
    CLASSES,
    write_cifar10_tarball,
    write_cifar100_tarball,
    write_ilsvrc_tar,
    write_svhn_mat,
)


def _read_shard(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = archive.extractfile(member).read()
    return list(samples.items())


def test_build_imagefolder_tar_verify_and_rebuild_byte_identical(tmp_path, fixture_tar, capsys) -> None:
    out, again = tmp_path / "a", tmp_path / "b"
    assert main(["data", "build", "imagefolder", "--source", fixture_tar, "--out", str(out), "--shard-size", "64"]) == 0
    assert "wrote 500 samples in 8 shards" in capsys.readouterr().out
    storage, manifest = load_manifest(str(out), "train")
    assert manifest.classes == CLASSES  # sorted class folders = CIFAR-10's label order
    assert [s.samples for s in manifest.shards] == [64] * 7 + [52]
    assert manifest.image_size == [32, 32] and manifest.image_format == "jpg" and manifest.num_samples == 500
    assert all(0.3 < m < 0.6 for m in manifest.mean) and all(0.15 < s < 0.35 for s in manifest.std)
    first = _read_shard(out / "train-000000.tar")
    assert all(set(sample) == {"jpg", "cls"} for _, sample in first)
    assert len({sample["cls"] for _, sample in first}) >= 8  # class-sorted source, class-mixed shards
    assert manifest.order_seed == 0
    in_order = tmp_path / "source-order"
    argv = ["data", "build", "imagefolder", "--source", fixture_tar, "--out", str(in_order), "--shard-size", "64"]
    assert main([*argv, "--source-order"]) == 0
    capsys.readouterr()
    ordered = _read_shard(in_order / "train-000000.tar")
    assert ordered[0][0] == "00000000" and ordered[0][1]["cls"] == b"0"
    assert {sample["cls"] for _, sample in ordered} == {b"0", b"1"}  # 50 airplanes, then automobiles
    with tarfile.open(fixture_tar) as archive:  # JPEG bytes are kept exactly as they were
        assert ordered[0][1]["jpg"] == archive.extractfile("train/airplane/0000.jpg").read()

    def every_sample(directory: Path) -> dict[str, dict[str, bytes]]:
        return {key: sample for path in sorted(directory.glob("train-*.tar")) for key, sample in _read_shard(path)}

    assert every_sample(out) == every_sample(in_order)  # the same samples, only the order differs
    assert main(["data", "verify", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "verified 500 samples in 8 shards"
    assert (
        main(["data", "build", "imagefolder", "--source", fixture_tar, "--out", str(again), "--shard-size", "64"]) == 0
    )
    for name in sorted(os.listdir(out)):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_inspect_prints_the_manifest(tmp_path, fixture_tar, capsys) -> None:
    build_dataset(imagefolder_source(fixture_tar), str(tmp_path), shard_size=100)
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: imagefolder" in out and "10 classes, 500 samples in 5 shards" in out and "32x32 jpg" in out


def test_imagefolder_directory_and_split_name(tmp_path, fixture_tar) -> None:
    with tarfile.open(fixture_tar) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    source = imagefolder_source(str(tmp_path / "src" / "train"), split="val")
    manifest = build_dataset(source, str(tmp_path / "out"), shard_size=128)
    assert manifest.split == "val" and manifest.num_samples == 500 and (tmp_path / "out" / "val-000003.tar").exists()
    from_tar = build_dataset(imagefolder_source(fixture_tar), str(tmp_path / "tar"), shard_size=128)
    assert [s.sha256 for s in manifest.shards] != [] and from_tar.num_samples == 500


def test_cifar10_python_tarball_is_stored_losslessly(tmp_path, fixture_tar, capsys) -> None:
    tarball = tmp_path / "cifar-10-python.tar.gz"
    pixels, labels = write_cifar10_tarball(fixture_tar, tarball)
    train = build_dataset(cifar_source("cifar10", str(tarball), "train"), str(tmp_path / "out"), shard_size=100)
    test = build_dataset(cifar_source("cifar10", str(tarball), "test"), str(tmp_path / "out"), shard_size=100)
    assert (train.num_samples, test.num_samples) == (400, 100) and train.classes == CLASSES
    samples = _read_shard(tmp_path / "out" / "test-000000.tar")
    assert sorted(int(key) for key, _ in samples) == list(range(100))  # keys are source indices, order mixed
    for key, members in samples:
        decoded = np.asarray(Image.open(io.BytesIO(members["png"])))
        assert np.array_equal(decoded, pixels[400 + int(key)])  # PNG: bit-exact pixels
        assert int(members["cls"]) == labels[400 + int(key)]
    assert main(["data", "verify", str(tmp_path / "out")]) == 0  # both splits
    assert capsys.readouterr().out.strip() == "verified 500 samples in 5 shards"
    assert main(["data", "verify", str(tmp_path / "out"), "--split", "test"]) == 0
    assert capsys.readouterr().out.strip() == "verified 100 samples in 1 shards"


def test_cifar100_python_tarball_uses_fine_labels(tmp_path, fixture_tar) -> None:
    tarball = tmp_path / "cifar-100-python.tar.gz"
    _, fine = write_cifar100_tarball(fixture_tar, tarball)
    manifest = build_dataset(cifar_source("cifar100", str(tarball), "train"), str(tmp_path / "out"), shard_size=400)
    assert manifest.num_samples == 400 and len(manifest.classes) == 100 and manifest.dataset == "cifar100"
    cls = {int(key): int(m["cls"]) for key, m in _read_shard(tmp_path / "out" / "train-000000.tar")}
    assert [cls[index] for index in range(400)] == fine[:400].tolist()
    with pytest.raises(ValueError, match="has no meta: it is not the official cifar100 python tarball"):
        cifar_source("cifar100", fixture_tar, "train")  # a tar, but of class folders


def test_svhn_mat_labels_zero_as_zero(tmp_path, fixture_tar) -> None:
    labels = write_svhn_mat(fixture_tar, tmp_path)
    manifest = build_dataset(svhn_source(str(tmp_path), "train"), str(tmp_path / "out"), shard_size=250)
    assert manifest.classes == [str(d) for d in range(10)] and manifest.num_samples == 500
    samples = [shard for index in (0, 1) for shard in _read_shard(tmp_path / "out" / f"train-00000{index}.tar")]
    cls = {int(key): int(m["cls"]) for key, m in samples}
    assert [cls[index] for index in range(500)] == labels[:500].tolist()


def test_ilsvrc_tar_of_class_tars(tmp_path, fixture_tar) -> None:
    write_ilsvrc_tar(fixture_tar, tmp_path / "ILSVRC2012_img_train.tar")
    source = imagefolder_source(str(tmp_path / "ILSVRC2012_img_train.tar"))
    assert source.classes == CLASSES and len(source) == 500
    manifest = build_dataset(source, str(tmp_path / "out"), shard_size=200)
    assert manifest.num_samples == 500
    assert main(["data", "verify", str(tmp_path / "out")]) == 0


def test_truncated_shard_and_corrupt_jpeg_are_named(tmp_path, fixture_tar, capsys) -> None:
    with tarfile.open(fixture_tar) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (tmp_path / "src" / "train" / "cat" / "0003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    manifest = build_dataset(
        imagefolder_source(str(tmp_path / "src")), str(tmp_path / "out"), shard_size=100, check_images=False
    )
    assert manifest.undecodable == ["00000153"]  # cat is class 3: 3 * 50 + 3
    shard = tmp_path / "out" / "train-000004.tar"
    shard.write_bytes(shard.read_bytes()[:30_000])
    capsys.readouterr()
    assert main(["data", "verify", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "sample 00000153: image does not decode" in out
    assert "train-000004.tar: truncated (30000 of 266240 bytes)" in out
    assert out.strip().splitlines()[-1].startswith("verification failed: 4 problem(s)")


def test_interrupted_build_leaves_no_manifest_and_no_partial_shard(tmp_path, fixture_tar) -> None:
    out = tmp_path / "out"
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100)
    done = []

    def interrupt(samples: int, size: int) -> None:
        done.append(samples)
        if len(done) == 250:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100, progress=interrupt)
    assert not (out / "train.json").exists()
    # No temporary files; every shard with its index.
    assert sorted(os.listdir(out)) == sorted(f"train-00000{i}.{ext}" for i in range(5) for ext in ("idx", "tar"))
    for name in os.listdir(out):  # every shard on disk is complete
        if name.endswith(".tar"):
            assert len(_read_shard(out / name)) == 100


@pytest.mark.integration
def test_build_to_s3_and_verify(bucket, fixture_tar, capsys) -> None:
    url = f"s3://{bucket}/cifar10"
    assert main(["data", "build", "imagefolder", "--source", fixture_tar, "--out", url, "--shard-size", "64"]) == 0
    capsys.readouterr()
    assert main(["data", "verify", url, "--split", "train"]) == 0
    assert capsys.readouterr().out.strip() == "verified 500 samples in 8 shards"
    storage, manifest = load_manifest(url + "/train.json")
    assert manifest.num_samples == 500 and storage.exists("train-000007.tar")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "build", "imagefolder", "--out", "OUT"], "error: imagefolder needs --source"),
        (
            ["data", "build", "cifar10", "--source", "/nonexistent.tar.gz", "--out", "OUT"],
            "error: --source /nonexistent.tar.gz does not exist",
        ),
        (
            ["data", "build", "imagefolder", "--source", "FIXTURE", "--out", "OUT", "--shard-size", "0"],
            "error: --shard-size 0 must be a positive number of samples",
        ),
        (
            ["data", "build", "cifar10", "--source", "FIXTURE", "--out", "OUT", "--split", "val"],
            "error: split 'val' is not in cifar10; choose train or test",
        ),
        (["data", "verify", "OUT"], "error: no shard manifests at "),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, fixture_tar) -> None:
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("FIXTURE", fixture_tar) for a in argv]
    completed = subprocess.run([sys.executable, "-m", "densenet_ray", *argv], capture_output=True, text=True)
    assert completed.returncode == 1, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), completed.stderr


@pytest.mark.integration
def test_s3_errors_are_one_line(aws_env, tmp_path, fixture_tar) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray", "data", "verify", "s3://no-such-bucket-zz/x"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip() == "error: bucket 'no-such-bucket-zz' does not exist (s3://no-such-bucket-zz/x)"
    assert "testing-secret-key" not in completed.stderr + completed.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_parallel_build_in_ray_tasks_matches_the_sequential_build(tmp_path, fixture_tar, monkeypatch, capsys) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray instance, sized by --parallel, shut down after
    sequential, parallel = tmp_path / "seq", tmp_path / "par"
    build_dataset(imagefolder_source(fixture_tar), str(sequential), shard_size=60)
    argv = ["data", "build", "imagefolder", "--source", fixture_tar, "--out", str(parallel), "--shard-size", "60"]
    assert main([*argv, "--parallel", "2"]) == 0
    assert "wrote 500 samples in 9 shards" in capsys.readouterr().out
    for name in sorted(os.listdir(sequential)):
        assert (sequential / name).read_bytes() == (parallel / name).read_bytes(), name
    import ray

    assert not ray.is_initialized()


def test_holdout_per_class_writes_train_and_test(tmp_path, fixture_tar, capsys) -> None:
    argv = ["data", "build", "imagefolder", "--source", fixture_tar, "--out", str(tmp_path), "--holdout-per-class", "5"]
    assert main(argv) == 0
    assert "wrote 450 samples" in capsys.readouterr().out
    _, test = load_manifest(str(tmp_path), "test")
    assert test.num_samples == 50 and test.classes == CLASSES
