"""``densenet-ray export`` and ``predict`` on a tiny run trained in the suite (``modern_run``: 2 Ray workers, with a
moving average of its weights), over real CIFAR-10 JPEGs from the committed slice."""

from __future__ import annotations

import json
import sys
import tarfile

import pytest
import torch
from PIL import Image

from densenet_ray.cli import main
from densenet_ray.data.reading.transforms import for_dataset
from densenet_ray.models import create_model
from densenet_ray.models.export import WEIGHTS_ONLY, load_export
from densenet_ray.models.formats import FORMATS, SUFFIXES
from densenet_ray.train.checkpoint.trained import load_trained

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def images(fixture_tar, tmp_path_factory) -> list[str]:
    """Six real CIFAR-10 JPEGs of different classes, written as files."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    with tarfile.open(fixture_tar) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith("0003.jpg")][:6]
        for member in members:
            path = folder / f"{member.name.split('/')[1]}.jpg"
            path.write_bytes(archive.extractfile(member).read())
            paths.append(str(path))
    return paths


def _batch(paths: list[str]) -> torch.Tensor:
    transform = for_dataset("cifar10", train=False)
    return torch.stack([transform(Image.open(path).convert("RGB")) for path in paths])


@pytest.mark.parametrize("file_format", FORMATS)
def test_every_format_reproduces_the_checkpoints_logits(modern_run, images, tmp_path, capsys, file_format) -> None:
    out = tmp_path / f"model{SUFFIXES[file_format]}"
    assert main(["export", str(modern_run["run"]), "--out", str(out)]) == 0  # the format follows the suffix
    assert f"({file_format}, " in capsys.readouterr().out
    card = json.loads((tmp_path / f"{out.name}.json").read_text())
    assert (card["format"], card["weights"], card["model"], card["input_size"]) == (
        file_format,
        "ema",
        "densenet_bc100_k12",
        [3, 32, 32],
    )
    assert card["classes"][:3] == ["airplane", "automobile", "bird"]  # from the run's manifest
    trained = load_trained(str(modern_run["run"]))  # the last checkpoint, its moving average
    network = None
    if file_format in WEIGHTS_ONLY:  # the CIFAR form loads into create_model strictly, from the card alone
        options = dict(card["create_model"])
        network = create_model(options.pop("name"), **options)
    batch = _batch(images)
    with torch.no_grad():
        expected = trained.network(batch)
        exported = load_export(str(out), file_format, network, trust_program=True)(batch)  # a file of our own
    assert torch.allclose(exported, expected, atol=1e-4), (exported - expected).abs().max()


def test_the_raw_weights_and_the_moving_average_are_different_exports(modern_run, tmp_path) -> None:
    for weights in ("raw", "ema"):
        assert main(["export", str(modern_run["run"]), "--weights", weights, "--out", str(tmp_path / weights)]) == 0
    raw, ema = (torch.load(tmp_path / name, weights_only=True) for name in ("raw", "ema"))
    assert raw.keys() == ema.keys() and not torch.equal(raw["classifier.weight"], ema["classifier.weight"])


def test_predict_agrees_with_the_network_and_skips_a_file_that_is_no_image(
    modern_run, images, tmp_path, capsys
) -> None:
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(modern_run["run"]), "--out", str(onnx)]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    trained = load_trained(str(modern_run["run"]))
    with torch.no_grad():
        expected = trained.network(_batch(images)).argmax(1).tolist()
    capsys.readouterr()
    for source in (str(onnx), str(modern_run["run"])):  # an export, and the run itself
        assert main(["predict", source, *images[:3], str(notes), *images[3:], "--json", "--batch-size", "4"]) == 0
        captured = capsys.readouterr()
        lines = [json.loads(line) for line in captured.out.splitlines()]
        assert [line["image"] for line in lines] == images
        assert [line["top"][0]["index"] for line in lines] == expected
        assert all(len(line["top"]) == 5 and line["top"][0]["class"] in trained.classes for line in lines)
        assert captured.err == f"skipped {notes}: not an image (UnidentifiedImageError)\n"


def test_export_and_predict_errors_are_one_line(modern_run, images, tmp_path, monkeypatch, capsys) -> None:
    assert main(["predict", str(modern_run["run"]), str(tmp_path / "nothing*.jpg")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nothing*.jpg'}: no such file")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the [onnx] extra were not installed
    assert main(["export", str(modern_run["run"]), "--out", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err == "error: --format onnx needs onnxscript: pip install 'densenet-ray[onnx]'\n"
    assert not list(tmp_path.iterdir())  # nothing half-written
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.pth")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_predict_reads_the_images_of_a_shard(modern_run, cifar_shards, capsys) -> None:
    shard = f"{cifar_shards}/test-000000.tar"
    assert main(["predict", str(modern_run["run"]), shard, "--limit", "3", "--top", "1", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(line["image"].startswith(f"{shard}/") for line in lines)
    with tarfile.open(shard) as archive:
        first = Image.open(archive.extractfile(lines[0]["image"].removeprefix(f"{shard}/"))).convert("RGB")
    trained = load_trained(str(modern_run["run"]))
    with torch.no_grad():
        expected = trained.network(for_dataset("cifar10", train=False)(first)[None]).argmax(1).item()
    assert lines[0]["top"][0]["index"] == expected
