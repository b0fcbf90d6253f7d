"""Files from others never run code. A checkpoint, state_dict or CIFAR archive whose unpickling would call a function
(here ``os.system``, creating a marker file) is refused in one line naming it, before the call, on every path that
loads one; the project's own files load as plain weights. TorchScript and exported-program files are programs and
load only with ``--trust-program``; pickles in remote run storage (compile artifacts, a sweep's saved state) only
with ``--trust-storage``."""

from __future__ import annotations

import io
import os
import pickle
import re
import shlex
import shutil
import struct
import tarfile
from pathlib import Path

import pytest
import torch

import densenet_ray as dr
from densenet_ray.cli import main
from densenet_ray.data.reading.epoch_plan import Layout, Segment
from densenet_ray.errors import UserError
from densenet_ray.models import create_model
from densenet_ray.safe_load import TRUST_STORAGE, NotPlainWeights
from densenet_ray.train.checkpoint.state import Position, TrainingState, restore, save_checkpoint
from densenet_ray.train.config.options import TrainConfig, training_option
from densenet_ray.train.config.resolved import resolve

SAVED = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "run-from-9912cdd"
CHECKPOINT = SAVED / "checkpoint_2026-12-05_18-04-50.237793"
CALLED = f"{os.system.__module__}.system"  # how a pickle names os.system: posix.system here
REFUSED = f"is not a plain weights file: loading it would call {CALLED} (code, not tensors); refused"


class Payload:
    """Unpickling it runs ``touch MARKER``: what a crafted file would run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    """The saved run's real checkpoint with one more entry that unpickling would call; and the marker it would make."""
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.pth"
    torch.save({**torch.load(CHECKPOINT / "state.pt", weights_only=True), "note": Payload(marker)}, path)
    return path, marker


def _image(fixture_tar: str, tmp_path: Path) -> str:
    """One real CIFAR-10 JPEG of the committed slice, as a file."""
    with tarfile.open(fixture_tar) as archive:
        member = next(m for m in archive.getmembers() if m.isfile())
        path = tmp_path / "image.jpg"
        path.write_bytes(archive.extractfile(member).read())
    return str(path)


def test_dr_load_refuses_a_checkpoint_that_holds_code(tmp_path) -> None:
    crafted, marker = _crafted(tmp_path)
    with pytest.raises(UserError) as refused:
        dr.load(crafted)
    assert str(refused.value) == f"checkpoint {crafted} {REFUSED}"
    assert not marker.exists()
    assert len(dr.load(CHECKPOINT).classes) == 10  # the project's own checkpoint is plain weights


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_predict_evaluate_and_export_refuse_it_in_one_line(command, tmp_path, fixture_tar, capsys) -> None:
    crafted, marker = _crafted(tmp_path)
    out = tmp_path / "exported.pth"
    extra = {"predict": [_image(fixture_tar, tmp_path)], "evaluate": [], "export": ["--out", str(out)]}[command]
    assert main([command, str(crafted), *extra]) == 1
    assert capsys.readouterr().err == f"error: checkpoint {crafted} {REFUSED}\n"
    assert not marker.exists() and not out.exists()


def test_init_from_refuses_it_before_anything_starts(tmp_path, capsys) -> None:
    crafted, marker = _crafted(tmp_path)
    assert main(["train", "cifar", "--init-from", str(crafted), "--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: --init-from {crafted} {REFUSED}\n"
    assert not marker.exists()


def test_pretrained_refuses_a_file_put_in_torchvisions_cache(tmp_path, monkeypatch) -> None:
    import torchvision

    crafted, marker = _crafted(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / os.path.basename(torchvision.models.DenseNet121_Weights.DEFAULT.url)
    cached.parent.mkdir(parents=True)
    crafted.rename(cached)  # its hash is checked on download only
    with pytest.raises(UserError) as refused:
        resolve(TrainConfig(dataset="imagenet", workers=4, pretrained=True, data="/no/data"))
    assert str(refused.value) == f"--pretrained {cached} {REFUSED}"
    assert not marker.exists()


def test_batch_inference_refuses_it_on_the_driver(tmp_path, cifar_shards, capsys) -> None:
    crafted, marker = _crafted(tmp_path)
    out = tmp_path / "predictions"
    assert main(["predict", str(crafted), cifar_shards, "--split", "test", "--out", str(out)]) == 1  # before Ray
    assert capsys.readouterr().err == f"error: checkpoint {crafted} {REFUSED}\n"
    assert not marker.exists() and not out.exists()


def _saved_run_copy(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "runs"
    shutil.copytree(SAVED, root / SAVED.name)
    return root, root / SAVED.name / CHECKPOINT.name


@pytest.mark.parametrize("file", ["state.pt", "rng-rank0.pt"])
def test_a_resume_refuses_a_checkpoint_file_that_holds_code(file, tmp_path) -> None:
    from densenet_ray.train.run.directory import RunDirectory
    from densenet_ray.train.run.preflight import choose_checkpoint

    root, checkpoint = _saved_run_copy(tmp_path)
    marker = tmp_path / "marker"
    saved = torch.load(checkpoint / file, weights_only=True)
    torch.save({**saved, "note": Payload(marker)}, checkpoint / file)
    config = resolve(TrainConfig(dataset="cifar10", depth=10, storage=str(root), name=SAVED.name))
    run = RunDirectory(config.run_url)
    with pytest.raises(UserError) as refused:  # the driver's check of the checkpoint to resume, before any worker
        choose_checkpoint(config, run)
    which = "" if file == "state.pt" else f"{file} is "
    assert str(refused.value) == (
        f"no checkpoint of run {run.url} loads: {checkpoint.name}/state.pt ({which}not a plain weights file: "
        f"loading it would call {CALLED} (code, not tensors)); start a new run with another --name"
    )
    model = create_model("densenet_bc100_k12", depth=10)
    state = TrainingState(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True))
    with pytest.raises(NotPlainWeights, match=re.escape(REFUSED)):  # a worker's own restore refuses it too
        restore(state, lambda name: (checkpoint / name).read_bytes(), 0, Layout(1, 0, 50), torch.device("cpu"))
    assert not marker.exists()


def test_the_projects_own_checkpoint_resumes_as_plain_weights(tmp_path) -> None:
    """Everything a checkpoint saves (moving average, fp16 scaler, AdamW state, segments, bests, RNG states, the
    configuration) is plain weights: it restores with no type allowlisted."""
    import random

    from densenet_ray.train.recipe import WeightAverage, make_optimizer, parameter_groups

    config = resolve(TrainConfig(dataset="cifar10", depth=10, ema=0.99, optimizer="adamw", storage=str(tmp_path)))
    model = create_model("densenet_bc100_k12", depth=10)
    optimizer = make_optimizer(parameter_groups(model, 1e-4, True, 0.5), "adamw", 0.1, 0.9)
    model(torch.zeros(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    position = Position(1, 3, 10, 0.5, (Segment(Layout(2, 1, 64), 3),), {"test_error": (0.5, 1)})
    average = WeightAverage(model, 0.99)
    state = TrainingState(model, optimizer, torch.amp.GradScaler("cpu"), average, position)
    save_checkpoint(state, config, 0, Layout(1, 0, 64), str(tmp_path))
    python_rng = random.getstate()
    random.random()
    fresh = create_model("densenet_bc100_k12", depth=10)
    again = TrainingState(
        fresh,
        make_optimizer(parameter_groups(fresh, 1e-4, True, 0.5), "adamw", 0.1, 0.9),
        torch.amp.GradScaler("cpu"),
        WeightAverage(fresh, 0.99),
    )
    restore(again, lambda name: (tmp_path / name).read_bytes(), 0, Layout(1, 0, 64), torch.device("cpu"))
    for saved, restored in ((model, fresh), (average.module, again.average.module)):
        assert all(
            torch.equal(a, b) for a, b in zip(saved.state_dict().values(), restored.state_dict().values(), strict=True)
        )
    assert again.optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert again.position == position and random.getstate() == python_rng


def test_a_torchscript_export_is_a_program_predict_runs_only_when_asked(tmp_path, fixture_tar, capsys) -> None:
    program = tmp_path / "model.pt"
    assert main(["export", str(CHECKPOINT), "--out", str(program)]) == 0  # torchscript, by its suffix
    image = _image(fixture_tar, tmp_path)
    capsys.readouterr()
    assert main(["predict", str(program), image]) == 1
    assert capsys.readouterr().err == (
        f"error: {program} is a torchscript file, a program that runs its maker's code when loaded; if you trust "
        "whoever made it, add --trust-program (trust_program=True in Python)\n"
    )
    assert main(["predict", str(program), image, "--trust-program", "--top", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    with pytest.raises(UserError, match="is not a plain weights file: it is a TorchScript program"):
        dr.load(program.rename(tmp_path / "model.pth"))  # without its card: read as a checkpoint, not run


def _cifar_member(name: str, content: object, protocol: int = 4) -> tuple[tarfile.TarInfo, bytes]:
    data = pickle.dumps(content, protocol=protocol)
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size = len(data)
    return info, data


@pytest.mark.parametrize("member", ["batches.meta", "data_batch_3"])
def test_data_build_refuses_a_cifar_archive_that_holds_code(member, tmp_path, fixture_tar, capsys) -> None:
    from tests.data.sources_fixtures import write_cifar10_tarball

    official = tmp_path / "official.tar.gz"
    write_cifar10_tarball(fixture_tar, official)
    crafted, marker = tmp_path / "cifar-10-python.tar.gz", tmp_path / "marker"
    with tarfile.open(official) as source, tarfile.open(crafted, "w:gz") as target:
        for info in source.getmembers():
            data = source.extractfile(info).read()
            if info.name.endswith(member):  # the same content, and a call
                info, data = _cifar_member(member, {**pickle.loads(data), b"note": Payload(marker)})  # noqa: S301
            target.addfile(info, io.BytesIO(data))
    out = tmp_path / "shards"
    assert main(["data", "build", "cifar10", "--source", str(crafted), "--out", str(out), "--split", "train"]) == 1
    assert capsys.readouterr().err == (
        f"error: {crafted}: {member} is not plain CIFAR data: unpickling it would call {CALLED}; refused (use the "
        "official python tarball)\n"
    )
    assert not marker.exists() and not out.exists()


def test_the_official_python_2_pickles_load() -> None:
    """The official batches are Python 2 pickles: byte strings, and numpy's arrays under ``numpy.core`` names."""
    from densenet_ray.data.building.sources import _CifarUnpickler

    def short(text: bytes) -> bytes:  # SHORT_BINSTRING, a Python 2 str
        return b"U" + bytes([len(text)]) + text

    pixels = bytes(range(6))
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b") + b"\x87R"
    array += b"(K\x01K\x02K\x03\x86cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R"
    array += b"(K\x03" + short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
    array += b"T" + struct.pack("<i", len(pixels)) + pixels + b"tb"
    batch = b"\x80\x02}(" + short(b"data") + array + short(b"labels") + b"](K\x01K\x02eu."
    loaded = _CifarUnpickler(io.BytesIO(batch), "data_batch_1").load()
    assert loaded[b"labels"] == [1, 2] and loaded[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert str(loaded[b"data"].dtype) == "uint8"


def test_compile_artifacts_in_remote_storage_load_only_when_trusted(bucket, capsys) -> None:
    from densenet_ray.train.checkpoint.compile_cache import load_compile_artifacts
    from densenet_ray.train.run.directory import RunDirectory

    run = RunDirectory(f"s3://{bucket}/runs/r")
    run.write_compile_artifacts(b"not a cache")
    assert load_compile_artifacts(run) is False
    assert capsys.readouterr().out == (
        f"not loading the compile artifacts in {run.url} (unpickling them runs code; remote storage is trusted with "
        "--trust-storage); compiling afresh\n"
    )
    assert load_compile_artifacts(run, trust_storage=True) is False
    assert "ignoring the unreadable compile artifacts" in capsys.readouterr().out  # trusted: PyTorch read them


def test_a_sweep_in_remote_storage_restores_only_when_trusted(bucket, tmp_path) -> None:
    from densenet_ray.data.storage import open_storage
    from densenet_ray.tune.runner import check_restore

    marker = tmp_path / "marker"
    for storage in (f"s3://{bucket}/sweeps", str(tmp_path / "sweeps")):
        open_storage(storage).write_bytes("lr/tuner.pkl", pickle.dumps(Payload(marker)))  # Tune's saved state
    remote = resolve(TrainConfig(storage=f"s3://{bucket}/sweeps"))
    with pytest.raises(UserError) as refused:
        check_restore(remote, "lr")
    assert str(refused.value) == (
        f"sweep lr exists in s3://{bucket}/sweeps: restoring it unpickles Tune's saved state, which runs code; add "
        "--trust-storage if only you and those you trust can write there, or choose another --name"
    )
    check_restore(resolve(TrainConfig(storage=f"s3://{bucket}/sweeps", trust_storage=True)), "lr")
    check_restore(resolve(TrainConfig(storage=str(tmp_path / "sweeps"))), "lr")  # local storage is the user's
    assert not marker.exists()
    assert training_option("trust_storage").flag == TRUST_STORAGE  # the lines name the declared flag
