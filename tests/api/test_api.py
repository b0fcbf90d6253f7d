"""The Python API (``import densenet_ray as dr``): light to import, every name resolves, and ``load``/``predict`` and
``evaluate`` on a saved run and the committed CIFAR-10 slice, in this process (no Ray needed); bad input raises
the ``UserError`` family, never exits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

import densenet_ray as dr

SAVED_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "run-from-9912cdd"


def test_import_densenet_ray_imports_neither_ray_nor_torch_until_a_name_is_used() -> None:
    code = (
        "import sys, densenet_ray as dr\n"
        "assert not {'ray', 'torch', 'webdataset', 'boto3'} & set(sys.modules), sorted(sys.modules)\n"
        "dr.sweep, dr.fit, dr.TrainConfig(epochs=3)\n"
        "assert 'ray' not in sys.modules\n"
        "print(type(dr.create_model('densenet121')).__name__)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "DenseNet"


def test_every_public_name_resolves_and_unknown_names_raise_attribute_error() -> None:
    assert {name for name in dr.__all__ if getattr(dr, name) is None} == set()
    assert set(dir(dr)) >= {"fit", "load", "evaluate", "sweep", "TrainConfig", "create_model"}
    assert dr.profile_model("densenet121").params == 7_978_856  # the paper's 8.0M, torchvision's count
    assert "densenet_bc100_k12" in dr.list_models()
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        dr.fitt  # noqa: B018


@pytest.fixture(scope="module")
def slice_images(tmp_path_factory: pytest.TempPathFactory, fixture_tar: str) -> dict[str, Path]:
    """One real CIFAR-10 JPEG of each of three classes from the committed slice, and a text file."""
    folder = tmp_path_factory.mktemp("images")
    found: dict[str, Path] = {}
    with tarfile.open(fixture_tar) as archive:
        for member in archive.getmembers():
            label = member.name.split("/")[-2] if member.isfile() else ""
            if label in ("cat", "ship", "truck") and label not in found:
                found[label] = folder / f"{label}.jpg"
                found[label].write_bytes(archive.extractfile(member).read())
    (folder / "notes.txt").write_text("not an image")
    return {**found, "text": folder / "notes.txt"}


def test_load_a_saved_run_and_predict_paths_images_and_tensors_alike(slice_images, tmp_path) -> None:
    run = shutil.copytree(SAVED_RUN, tmp_path / "run")
    classifier = dr.load(run, which="best")
    assert classifier.card["model"] == "densenet_bc100_k12" and len(classifier.classes) == 10
    cat = slice_images["cat"]
    with Image.open(cat) as opened:
        picture = opened.convert("RGB")
    pixels = torch.from_numpy(__import__("numpy").asarray(picture).copy()).permute(2, 0, 1)  # uint8, 3x32x32
    inputs = [str(cat), slice_images["text"], picture, pixels, torch.stack([pixels, pixels]), slice_images["ship"]]
    predictions = classifier.predict(inputs, top=3, batch_size=2)
    names = [prediction.image for prediction in predictions]
    in_memory = ["<input 2>", "<input 3>", "<input 4:0>", "<input 4:1>"]
    assert names == [str(cat), str(slice_images["text"]), *in_memory, str(slice_images["ship"])]
    assert predictions[1].error.startswith("not an image") and predictions[1].top == []
    first = predictions[0].top
    assert len(first) == 3 and [p for _, p in first] == sorted((p for _, p in first), reverse=True)
    assert 0 < sum(p for _, p in first) <= 1 + 1e-6 and predictions[0].label == first[0][0]
    for same in predictions[2:6]:  # the file, the PIL image and the tensors are the same pixels
        assert [name for name, _ in same.top] == [name for name, _ in first]
        assert [p for _, p in same.top] == pytest.approx([p for _, p in first], abs=1e-6)
    assert classifier.predict(str(cat), top=1)[0].top[0] == pytest.approx(first[0])


def test_evaluate_a_saved_run_on_the_slice_matches_the_cli(cifar_shards, tmp_path, capsys) -> None:
    import json

    from densenet_ray.cli import main

    run = shutil.copytree(SAVED_RUN, tmp_path / "run")
    scores = dr.evaluate(run, data=cifar_shards, batch_size=100, loader_workers=0, precision="fp32")
    assert (scores["split"], scores["samples"], scores["weights"], scores["precision"]) == ("test", 500, "raw", "fp32")
    assert 0 <= scores["top1_error"] <= 1 and scores["top5_error"] <= scores["top1_error"]
    code = main(
        ["evaluate", str(run), "--data", cifar_shards, "--loader-workers", "0", "--precision", "fp32", "--json"]
    )
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["top1_error"] == scores["top1_error"] and printed["loss"] == scores["loss"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dr.fit(dr.TrainConfig(depth=101)), "depth 101 does not fit a DenseNet-BC/B"),
        (lambda: dr.fit({"epoks": 1}), "unknown option(s) in the options: epoks"),
        (lambda: dr.fit(dr.TrainConfig(lr_schedule="linear")), "--lr-schedule 'linear' is not one of: step, cosine"),
        (lambda: dr.load("/no/such/run"), "/no/such/run"),
        (lambda: dr.evaluate(SAVED_RUN, data="/d", precision="fp8"), "--precision 'fp8' is not one of"),
        (lambda: dr.sweep("sideways"), "unknown sweep 'sideways'"),
        (lambda: dr.sweep("custom"), "a custom sweep needs space=FILE.yaml or a mapping"),
        (lambda: dr.sweep("wide", max_failures=2), "'max_failures' is set by the sweep itself"),
        (lambda: dr.sweep("custom", space={"space": {"name": {"grid": ["a"]}}}), "'name' is set by the sweep itself"),
    ],
)
def test_bad_input_raises_one_line_user_errors_before_ray_starts(call, message: str) -> None:
    with pytest.raises(dr.UserError) as raised:
        call()
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_predict_refuses_what_is_not_an_image_input(tmp_path) -> None:
    classifier = dr.load(shutil.copytree(SAVED_RUN, tmp_path / "run"))
    with pytest.raises(dr.UserError, match="input 0 is a int; give a path, a PIL image or a tensor"):
        classifier.predict([3])
    with pytest.raises(dr.UserError, match="top 0 and batch_size 64 must be at least 1"):
        classifier.predict(["x.jpg"], top=0)
