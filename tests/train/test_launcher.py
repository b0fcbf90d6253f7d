"""End to end on a real local Ray instance (2 CPU workers, gloo DDP) over shards of real CIFAR-10 images."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from densenet_ray.data.storage.s3client import checksum_environment
from densenet_ray.train.acceleration import choose
from densenet_ray.train.run.directory import COMPILE_ARTIFACTS_FILE
from tests.data.rawbody_proxy import RawBodyProxy
from tests.train.run_helpers import (
    attempt_records,
    epoch_records,
    small_run,
    stderr_lines,
    train,
    train_in_terminal,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("module_cluster")]


@pytest.fixture
def shards(cifar_shards) -> str:
    return cifar_shards


def _assert_evaluates_to(checkpoint: str, shards: str, reported_error: float, capsys) -> None:
    """``densenet-ray evaluate`` on all 500 test images agrees with the distributed run's reported error (in this
    process: the command's own code, without a second interpreter's start-up)."""
    from densenet_ray.cli import main

    capsys.readouterr()
    argv = ["evaluate", checkpoint, "--data", shards, "--batch-size", "25", "--loader-workers", "0", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 500
    assert abs(result["top1_error"] - reported_error) <= 1 / 500  # one borderline argmax at most


def test_two_worker_run_continues_under_the_same_name_and_ctrl_c_saves_it(shards, tmp_path, capsys) -> None:
    """A finished 2-epoch run, continued under its name to more epochs (its epoch 3 only, the step counter carried
    on); Ctrl+C during that continuation saves it and exits 130, and the same name resumes it again. (The run Ctrl+C
    stops is the continuation itself: one Ray run serves both behaviours.)"""
    import signal
    import time

    from tests.train.run_helpers import train_env

    common = small_run(shards, tmp_path, name="run1")  # 10 steps of 2 x 25 images: the whole slice per epoch
    first = train(*common, "--epochs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "epoch 1/2: loss" in first.stdout and "densenet-ray run summary" in first.stdout
    assert "\x1b[" not in first.stdout + first.stderr  # piped: plain lines, no terminal escapes
    run = tmp_path / "run1"
    records = epoch_records((run / "metrics.jsonl").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    # auto on a 20-step run: this CPU's precision, eager; how it ran is said once, with the time to the first step
    assert records[0]["acceleration"] == choose("auto", None, None, torch.device("cpu"), 20).describe()
    assert records[0]["first_step_seconds"] > 0 and records[1]["first_step_seconds"] is None
    assert f"({records[0]['acceleration']}; first step " in first.stdout
    assert all(r["test_samples"] == 500 and r["step"] == 10 * r["epoch"] for r in records)
    assert all(r["world_size"] == 2 for r in records)
    (start,) = attempt_records((run / "metrics.jsonl").read_text())  # the worker group started once, on 2 workers
    assert (start["world_size"], start["epoch"], start["batch"], start["resumed"]) == (2, 0, 0, False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"]["name"], config["model"]["depth"], config["optim"]["batch_size"]) == (
        "densenet_bc100_k12",
        16,
        50,
    )
    assert not first.stderr.strip(), first.stderr  # quiet: none of Ray's or PyTorch's own start-up lines
    assert not (run / "lease.json").exists()  # released at the end
    assert any(p.name.startswith("checkpoint_") and (p / "state.pt").exists() for p in run.iterdir())

    # The saved checkpoint evaluates, in one process, to the error the distributed run reported.
    last = max((p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint_")), key=lambda p: p.name)
    _assert_evaluates_to(str(last), shards, records[-1]["test_error"], capsys)

    command = [sys.executable, "-m", "densenet_ray.cifar", *common, "--epochs", "30"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=train_env())
    deadline = time.monotonic() + 300
    for line in process.stdout:  # the continuation is under way once its first epoch has ended
        if line.startswith("epoch 3/30:") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run run1 interrupted; its last checkpoint is saved: rerun with --name run1 to resume it" in stderr
    assert "Traceback" not in stderr
    records = epoch_records((run / "metrics.jsonl").read_text())
    done = [r["epoch"] for r in records]
    assert done[:3] == [1, 2, 3] and 3 <= done[-1] < 30  # continued: epoch 3 first, step counter carried on
    assert records[2]["step"] == 30
    second_start = attempt_records((run / "metrics.jsonl").read_text())[1]
    assert (second_start["epoch"], second_start["batch"], second_start["resumed"]) == (2, 0, True)
    assert records[2]["loss"] < records[0]["loss"]

    resumed = train(*common, "--epochs", str(done[-1] + 1))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    at = re.search(r"resumed on 2 worker\(s\) (?:at the start of|in) epoch (\d+)", resumed.stdout + resumed.stderr)
    # from the last checkpoint committed: the last epoch recorded, or the one before if Ctrl+C came between the two
    assert at is not None and int(at.group(1)) - 1 in (done[-1], done[-1] - 1)
    final = [r["epoch"] for r in epoch_records((run / "metrics.jsonl").read_text())]
    assert final[-1] == done[-1] + 1  # and it ends at the new --epochs


@pytest.fixture
def raw_body_s3(moto_server) -> Iterator[str]:
    """moto behind :class:`RawBodyProxy`: an S3 server that stores request bodies as sent; yields its endpoint."""
    import pyarrow.fs

    from densenet_ray.data.storage import s3_client

    proxy = RawBodyProxy(int(moto_server.rsplit(":", 1)[1]))
    try:  # the server really keeps the framing of a client that sends streaming checksums (pyarrow's, by default)
        s3_client(moto_server).create_bucket(Bucket="framing")
        with pytest.MonkeyPatch.context() as patch:
            for name in checksum_environment():
                patch.delenv(name, raising=False)
            filesystem = pyarrow.fs.S3FileSystem(endpoint_override=proxy.url, region="us-east-1")
            with filesystem.open_output_stream("framing/probe") as stream:
                stream.write(b"probe")
        stored = s3_client(moto_server).get_object(Bucket="framing", Key="probe")["Body"].read()
        assert stored != b"probe" and b"probe" in stored and proxy.streamed == 1, stored
        yield proxy.url
    finally:
        proxy.stop()


def test_two_worker_run_with_s3_run_storage(shards, bucket, raw_body_s3, monkeypatch, capsys) -> None:
    """The run directory on S3 behind a custom endpoint, given in Ray's URL form (no endpoint variable at all), on a
    server that stores request bodies as sent (aws-chunked framing included, as s3rver and older Ceph do): the run
    finishes, resumes from its checkpoint and shows on the dashboard."""
    from densenet_ray.data.storage import open_storage

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    host = raw_body_s3.removeprefix("http://")
    storage = f"s3://{bucket}/runs?endpoint_override={host}&scheme=http"
    # --local: a private instance, whose workers inherit this test's credentials; the module's head started without
    # them (on a real cluster the workers' own instance profile provides them, never the job's metadata).
    common = [*small_run(shards, storage, name="s3run", epochs=2), "--local"]
    completed = train(*common, "--limit-epochs", "1", "--profile-steps", "2-2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "densenet-ray run summary" in completed.stdout
    run = open_storage(f"s3://{bucket}/runs/s3run", endpoint_url=raw_body_s3)
    (first,) = epoch_records(run.read_bytes("metrics.jsonl").decode())
    assert yaml.safe_load(run.read_bytes("config.yaml"))["storage"]["root"] == storage
    checkpoints = sorted({info.name.split("/")[0] for info in run.list("checkpoint_") if "/" in info.name})
    assert checkpoints and run.exists(f"{checkpoints[-1]}/state.pt")
    # TensorBoard writes local files: written beside the worker, uploaded into the run directory
    (events,) = [info for info in run.list("tensorboard/") if "tfevents" in info.name]
    assert events.size > 0
    traces = sorted(info.name for info in run.list("tensorboard/profile/"))  # every rank's, uploaded
    assert traces == ["tensorboard/profile/rank0.pt.trace.json.gz", "tensorboard/profile/rank1.pt.trace.json.gz"]

    # densenet-ray evaluate reads the checkpoint straight from S3 and agrees with the run's reported error.
    url = f"s3://{bucket}/runs/s3run/{checkpoints[-1]}?endpoint_override={host}&scheme=http"
    _assert_evaluates_to(url, shards, first["test_error"], capsys)

    resumed = train(*common)  # reads back the checkpoint Ray wrote (and its snapshot), then trains epoch 2
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at the start of epoch 2" in resumed.stdout + resumed.stderr
    records = epoch_records(run.read_bytes("metrics.jsonl").decode())
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["loss"] < records[0]["loss"]
    from densenet_ray.cli import main

    capsys.readouterr()
    assert main(["dashboard", "--json", "--no-cluster", "--storage", storage]) == 0
    (shown,) = [shown for shown in json.loads(capsys.readouterr().out)["runs"] if shown["name"] == "s3run"]
    assert (shown["status"], shown["epoch"], shown["epochs"]) == ("FINISHED", 2, 2), shown


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--data", "DATA", "--model", "densenet_bc101"], 1, "error: unknown model 'densenet_bc101'"),
        (["--data", "DATA", "--depth", "101"], 1, "error: depth 101 does not fit a DenseNet-BC/B"),
        (
            ["--data", "DATA", "--batch-size", "1", "--workers", "2"],
            1,
            "error: global --batch-size 1 is smaller than --workers 2",
        ),
        (["--data", "EMPTY"], 1, "error: no shard manifest for split 'train' at"),
        (["--data", "DATA", "--storage", "/proc/forbidden"], 1, "error: --storage /proc/forbidden is not writable"),
        (["--data", "DATA", "--dataset", "mnist"], 2, "densenet-ray train cifar: error: argument --dataset"),
        (
            ["--data", "DATA", "--pretrained"],
            1,
            "error: --pretrained: torchvision has ImageNet weights for densenet121",
        ),
        (["--data", "DATA", "--batch-size", "1000"], 1, "error: DATA has 500 training samples, fewer than one global"),
        (["--data", "DATA", "--max-bad-steps", "0"], 1, "error: --max-bad-steps 0 must be at least 1"),
    ],
)
def test_bad_input_is_one_line(args, code, message, shards, tmp_path) -> None:
    args = [a.replace("DATA", shards).replace("EMPTY", str(tmp_path)) for a in args]
    completed = train(*args, "--storage", str(tmp_path)) if "--storage" not in args else train(*args)
    assert completed.returncode == code, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message.replace("DATA", shards)), completed.stderr


def test_storage_in_a_missing_bucket_is_one_line(shards, aws_env) -> None:
    completed = train("--data", shards, "--storage", "s3://no-such-bucket-here/runs")
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: --storage s3://no-such-bucket-here/runs is not writable (bucket "), lines[0]
    assert "testing-secret-key" not in completed.stderr + completed.stdout


def test_gpu_on_a_cluster_without_gpus_is_one_line_before_any_worker(shards, tmp_path) -> None:
    recorded = (Path(os.environ["RAY_TMPDIR"]) / "ray" / "ray_current_cluster").read_text().strip()
    completed = train(*small_run(shards, tmp_path, name="gpu"), "--gpu")
    assert completed.returncode == 1
    assert stderr_lines(completed) == [
        f"error: --gpu: the Ray cluster at {recorded} has 0 GPUs and this run needs 2 (one per worker); drop --gpu "
        "to run on CPUs, or start the cluster on GPU machines"
    ]
    assert not (tmp_path / "gpu").exists()  # refused before the run directory, let alone a worker


def test_a_terminal_gets_a_progress_bar_then_the_summary(shards, tmp_path) -> None:
    args = small_run(shards, tmp_path, name="tty", epochs=1, batch_size=10, limit_train_batches=30)
    code, output = train_in_terminal(*args, "--limit-eval-batches", "2")
    assert code == 0, output[-3000:]
    assert "\x1b[" in output and "━" in output  # rich's bar, drawn with terminal escapes
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    # the first report has no speed yet (its step carried the start-up); later ones do
    bar = r"epoch 1 ━+ *\d+/30 batches  (…|[\d.]+) img/s  loss [\d.]+ epoch ETA (…|\d+:\d\d)"
    assert re.search(bar, plain), plain[-2000:]
    assert plain.rfind("densenet-ray run summary") > plain.rfind("epoch 1/1: loss") > 0


def _final_state(run) -> dict:
    import torch

    checkpoints = sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))
    states = [torch.load(p / "state.pt", weights_only=False) for p in checkpoints]
    final = max(states, key=lambda s: (s["epoch"], s["next_batch"]))
    return final


MODERN = ("--randaugment", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "0.99", "--label-smoothing", "0.1")
MODERN += ("--accumulate", "2", "--checkpoint-every-steps", "1")  # checkpoints every 2 batches, as the others


@pytest.mark.parametrize("numerics", [MODERN, ("--compile",)], ids=["auto-modern-recipe", "compiled"])
def test_killed_worker_resumes_to_bitwise_identical_weights(numerics, shards, tmp_path) -> None:
    """Under the default numerics (auto: this CPU's precision) eager with the modern recipe's seeded randomness and
    state on (RandAugment, MixUp/CutMix, the weights' moving average, accumulation), and compiled, as long runs are,
    with the paper's recipe. (One run each: the eager paper's-recipe step is the modern one with its options off.)"""
    common = small_run(
        shards,
        tmp_path,
        depth=10,  # one dense layer a block: the smallest DenseNet-BC, and the cheapest to compile
        epochs=2,
        limit_train_batches=4,
        checkpoint_every_steps=2,
        drop_rate=0.1,
        keep_checkpoints=10,
        max_failures=1,
        log_every_steps=1,
    )
    common = [*common, *numerics]
    clean = train(*common, "--name", "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    marker = tmp_path / "fault-injected"
    env_fault = f"7:1:{marker}"  # rank 1 dies at global step 7: mid-epoch 2, after the step-6 checkpoint
    os.environ["DENSENET_RAY_FAULT"] = env_fault
    try:
        faulty = train(*common, "--name", "faulty")
    finally:
        del os.environ["DENSENET_RAY_FAULT"]
    assert faulty.returncode == 0, faulty.stderr[-3000:]
    assert marker.exists()  # the worker really died
    snapshot = json.loads((tmp_path / "faulty" / "checkpoint_manager_snapshot.json").read_text())
    committed = {r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]}
    on_disk = {p.name for p in (tmp_path / "faulty").iterdir() if p.is_dir() and p.name.startswith("checkpoint_")}
    assert on_disk <= committed  # nothing Ray never committed is left behind
    a, b = _final_state(tmp_path / "clean"), _final_state(tmp_path / "faulty")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 8)
    # Compiled runs carry their compiled graphs for restarts on other machines; eager ones have none to carry.
    artifacts = [tmp_path / name / COMPILE_ARTIFACTS_FILE for name in ("clean", "faulty")]
    assert (
        all(p.exists() and p.stat().st_size > 0 for p in artifacts)
        if "--compile" in numerics
        else not any(map(Path.exists, artifacts))
    )
    assert not [key for key in a["model"] if key.startswith(("module.", "_orig_mod."))]  # saved unwrapped
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert (a["ema"] is None) == (b["ema"] is None) == ("--ema" not in numerics)
    for key, value in (a["ema"] or {}).items():  # the moving average resumed exactly too
        assert torch.equal(value, b["ema"][key]), key
    # TensorBoard shows the resumed run's curves as the uninterrupted run's: the lost attempt's steps after its
    # checkpoint are hidden (purge_step), the checkpoint's own epoch record kept.
    for tag in ("epoch/test_error", "train/loss"):
        assert _scalars(tmp_path / "faulty", tag) == _scalars(tmp_path / "clean", tag), tag


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_images_entry_point_fine_tunes_densenet121_on_own_photos(fixture_tar, tmp_path, capsys) -> None:
    """``python -m densenet_ray.images`` on a 5-class folder of 96-pixel photos with bad files among them: a
    DenseNet-121 from a torchvision state_dict gets a 5-way head; its export, predictions and evaluation name the
    classes."""
    import torch
    import torchvision

    from densenet_ray.cli import main
    from densenet_ray.train.checkpoint.trained import load_trained
    from tests.data.own_images import OWN_CLASSES, write_own_folder

    weights = tmp_path / "densenet121-torchvision.pth"
    torch.save(torchvision.models.densenet121().state_dict(), weights)  # --init-from a torchvision state_dict
    photos = write_own_folder(fixture_tar, tmp_path / "photos", per_class=6)
    data = tmp_path / "shards"
    assert (
        main(["data", "build", "imagefolder", "--source", str(photos), "--out", str(data), "--holdout-per-class", "2"])
        == 0
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "densenet_ray.images", "--data", str(data), "--init-from", str(weights)]
    command += ["--workers", "2", "--batch-size", "4", "--epochs", "1", "--limit-train-batches", "2"]
    command += ["--loader-workers", "0", "--storage", str(tmp_path / "runs"), "--name", "own"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = tmp_path / "runs" / "own"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and record["test_samples"] == 9  # 2 of each class held out, one of them broken
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"]["name"], config["model"]["num_classes"], config["data"]["classes"]) == (
        "densenet121",
        5,
        OWN_CLASSES,
    )
    assert (config["data"]["image_size"], config["data"]["eval_split"], config["model"]["init_from"]) == (
        96,
        "test",
        str(weights),
    )
    # Its state_dict export is torchvision's densenet121 with a 5-way head, strictly, with the checkpoint's logits.
    assert main(["export", str(run), "--out", str(tmp_path / "own.pth")]) == 0
    card = json.loads((tmp_path / "own.pth.json").read_text())
    assert card["classes"] == OWN_CLASSES and card["input_size"] == [3, 96, 96] and card["crop_pct"] == 0.875
    theirs = torchvision.models.densenet121(num_classes=5)
    theirs.load_state_dict(torch.load(tmp_path / "own.pth", weights_only=True), strict=True)
    batch = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = load_trained(str(run)).network(batch)
        assert torch.allclose(theirs.eval()(batch), expected, atol=1e-5)
    # A safetensors export loads into torchvision's densenet121 and into create_model from its card, logits equal;
    # its header carries the card, so predict needs nothing beside it.
    from safetensors import safe_open
    from safetensors.torch import load_file

    import densenet_ray as dr

    exported = tmp_path / "own.safetensors"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    theirs.load_state_dict(load_file(exported), strict=True)
    with safe_open(exported, "pt") as opened:
        header = opened.metadata()
    assert json.loads(header["classes"]) == OWN_CLASSES and header["format"] == "pt"
    card = json.loads((tmp_path / "own.safetensors.json").read_text())
    ours = dr.create_model(**card["create_model"])
    ours.load_state_dict(load_file(exported), strict=True)
    with torch.no_grad():
        assert torch.equal(theirs.eval()(batch), ours.eval()(batch))
    (tmp_path / "own.safetensors.json").unlink()
    assert dr.load(str(exported)).classes == OWN_CLASSES

    (prediction,) = dr.load(str(run)).predict([str(photos / "deer" / "0000.png")], top=5)
    assert sorted(name for name, _ in prediction.top) == sorted(OWN_CLASSES)
    evaluated = dr.evaluate(str(run), batch_size=5, loader_workers=0, per_class=True)
    assert evaluated["samples"] == 9 and [row["name"] for row in evaluated["per_class"]] == OWN_CLASSES
    assert [row["support"] for row in evaluated["per_class"]] == [2, 2, 2, 1, 2]
    assert sum(map(sum, evaluated["confusion_matrix"])) == 9
    capsys.readouterr()
    argv = ["evaluate", str(run), "--per-class", "--plot", str(tmp_path / "confusion.png"), "--loader-workers", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in OWN_CLASSES) and "precision" in printed
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_freeze_epochs_hold_the_backbone_then_release_it(shards, tmp_path) -> None:
    """``train images`` from a state_dict with ``--freeze-epochs 1``, AdamW and a tenth of the rate for the
    backbone: after epoch 1 only the new head differs from the loaded weights; after epoch 2 the backbone and its
    BatchNorm statistics have trained too."""
    from densenet_ray.models import create_model

    start = create_model("densenet_bc100_k12", depth=10, num_classes=10).state_dict()
    torch.save(start, tmp_path / "start.pth")
    args = small_run(shards, tmp_path, depth=10, epochs=2, limit_train_batches=2, limit_eval_batches=1, name="ft")
    args += ["--init-from", str(tmp_path / "start.pth"), "--freeze-epochs", "1", "--optimizer", "adamw"]
    args += ["--lr", "0.001", "--backbone-lr-scale", "0.1", "--keep-checkpoints", "2", "--no-compile"]
    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray.images", *args], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    checkpoints = sorted(c for c in (tmp_path / "ft").glob("checkpoint_*") if c.is_dir())
    first, second = (torch.load(c / "state.pt", weights_only=False)["model"] for c in checkpoints)
    changed = sorted(key for key in start if not torch.equal(start[key], first[key]) and "num_batches" not in key)
    assert changed == ["classifier.bias", "classifier.weight"]
    assert not torch.equal(start["features.conv0.weight"], second["features.conv0.weight"])
    assert not torch.equal(start["features.norm5.running_var"], second["features.norm5.running_var"])
    records = epoch_records((tmp_path / "ft" / "metrics.jsonl").read_text())
    # The classifier's rate: a 2-epoch step schedule divides at 50 % and 75 % of its 4 steps (after steps 2 and 3).
    assert [r["lr"] for r in records] == pytest.approx([1e-3, 1e-5])
    assert [r["mean_lr"] for r in records] == pytest.approx([1e-3, 5.5e-5])


def test_a_paper_family_refuses_shards_it_does_not_fit(shards, tmp_path, capsys) -> None:
    from densenet_ray.cli import main

    argv = ["train", "imagenet", "--data", shards, "--workers", "1", "--storage", str(tmp_path), "--local"]
    assert main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --data {shards} holds 10 classes of 32x32 images; imagenet training takes 1000")
    assert error.endswith("train them with `densenet-ray train images`") and "\n" not in error


def test_explicit_bf16_autocast_and_channels_last(shards, tmp_path) -> None:
    """--precision bf16 --channels-last --no-compile on CPU workers: explicit choices win over auto, the model trains
    under DDP, and the record says how it ran (the compiled model is checked by the resume test)."""
    args = small_run(shards, tmp_path, epochs=1, limit_train_batches=3, limit_eval_batches=2, name="fast")
    completed = train(*args, "--precision", "bf16", "--channels-last", "--no-compile")
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "fast" / "metrics.jsonl").read_text().splitlines()[-1])
    # A 1-epoch step schedule divides at 50 % and 75 % of its 3 steps: 0.1, 0.1, then 0.01 (not 0.001 throughout).
    assert record["step"] == 3 and record["test_samples"] == 100
    assert (record["lr"], record["mean_lr"]) == pytest.approx((0.01, 0.07))
    assert abs(record["loss"] - math.log(10)) < 0.35  # three steps from initialisation: still near chance
    config = yaml.safe_load((tmp_path / "fast" / "config.yaml").read_text())
    execution = config["execution"]
    assert (execution["precision"], execution["channels_last"], execution["compile"]) == ("bf16", True, False)
    assert record["acceleration"] == "bf16 autocast, channels_last, eager" and record["first_step_seconds"] > 0
    state = _final_state(tmp_path / "fast")  # saved unwrapped: loads into a plain model
    assert not [key for key in state["model"] if key.startswith(("module.", "_orig_mod."))]


def test_a_profiled_run_whose_error_stopped_improving_stops_early(shards, tmp_path) -> None:
    """One run, two behaviours (a Ray start saved). ``--profile-steps 2-3``: each rank's trace is in the run's
    tensorboard/profile/ and loads in torch.profiler's own trace reader; the driver prints rank 0's table of
    convolution and BatchNorm operators and the gloo collectives' share. ``--early-stop test_error:1``: a rate of
    10^4 diverges within the first epoch, every later epoch predicts the same class, so the test error never
    improves on epoch 1's and the run ends after epoch 2 of 5, as finished."""
    from torch.profiler._trace_validator import _load_events, validate_trace

    args = small_run(shards, tmp_path, depth=10, epochs=5, limit_train_batches=3, limit_eval_batches=2, name="early")
    completed = train(*args, "--lr", "10000", "--early-stop", "test_error:1", "--profile-steps", "2-3", "--no-compile")
    assert completed.returncode == 0, completed.stderr[-3000:]
    text, metrics = completed.stdout, (tmp_path / "early" / "metrics.jsonl").read_text()

    traces = tmp_path / "early" / "tensorboard" / "profile"
    assert sorted(path.name for path in traces.iterdir()) == ["rank0.pt.trace.json.gz", "rank1.pt.trace.json.gz"]
    for trace in traces.iterdir():
        passed, violations = validate_trace(str(trace))
        assert passed, violations
        names = {str(event.get("name")) for event in _load_events(str(trace))}
        assert {"ProfilerStep#0", "ProfilerStep#1", "data_loader"} <= names
        assert any(name.startswith("gloo:") for name in names)  # DDP's all-reduce, on the gloo thread
    assert "profile of steps 2-3 (" in text and f"every rank's trace: {traces}" in text
    table = text.split("profile of steps 2-3", 1)[1]
    assert "aten::" in table and "convolution" in table and "batch_norm" in table
    assert float(re.search(r"DDP communication ([\d.]+) %", text).group(1)) > 0
    (profile,) = [json.loads(line) for line in metrics.splitlines() if json.loads(line).get("profile")]
    assert (profile["first"], profile["last"], profile["device"]) == (2, 3, "CPU")

    records = epoch_records(metrics)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["test_error"] >= records[0]["test_error"]
    reason = "test_error has not improved for 1 epoch(s)"
    assert records[0]["stopped"] is None and records[1]["stopped"].startswith(reason)
    assert f"stopped at epoch 2 of 5: {reason}" in text
    assert "2/5 (stopped: test_error has not improved" in text.replace("\n", " ")
