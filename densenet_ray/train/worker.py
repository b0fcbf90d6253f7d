"""The Ray Train worker loop: DDP DenseNet over the sharded pipeline, an exact evaluation and a checkpoint per epoch.

Runs in every Ray Train worker. It builds its model and data itself, resumes from ``ray.train.get_checkpoint()``
(the checkpoint's own epoch and batch position, never the controller's count), and reports once per epoch (and
every ``checkpoint_every_steps`` steps) with a checkpoint: a report per step would cost the controller's poll
interval each time (RAY.md section 1).
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import tempfile
import time
from typing import Any

import torch
from torch import nn

from densenet_ray.data.pipeline import PipelineConfig, make_loader
from densenet_ray.data.transforms import for_dataset
from densenet_ray.models import create_model
from densenet_ray.train.checkpoint import STATE_FILE, load_initial_weights, pretrained_state_dict
from densenet_ray.train.config import TrainConfig, learning_rate
from densenet_ray.train.engine import evaluate, train_epoch


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.random.get_rng_state(), "python": random.getstate()}


def _save(directory: str, state: dict[str, Any], rank: int) -> None:
    # Ray merges the ranks' directories: rank 0 writes the training state, every rank its own RNG state.
    if rank == 0:
        torch.save(state, os.path.join(directory, STATE_FILE))
    torch.save(_rng_state(), os.path.join(directory, f"rng-rank{rank}.pt"))


WARMUP_STEPS = 5  # steady-state throughput leaves out each epoch's first steps (allocator, loader start-up)
FAULT_ENV = "DENSENET_RAY_FAULT"  # "STEP:RANK:MARKER_FILE": kill that rank once at that global step


def _maybe_inject_fault(global_step: int, rank: int) -> None:
    """Fault injection for testing recovery: the process dies as a crashed or preempted worker would."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    step, fault_rank, marker = spec.split(":", 2)
    if global_step == int(step) and rank == int(fault_rank) and not os.path.exists(marker):
        with open(marker, "w") as handle:  # once only: the restarted worker must get past this step
            handle.write(str(global_step))
        os._exit(1)


class _Progress:
    """Rank 0 rewrites ``progress.json`` in the run directory every ``interval`` seconds; the driver prints it.

    Reports to Ray would each cost a controller poll interval, so in-epoch progress goes through storage instead.
    """

    def __init__(self, config: TrainConfig, interval: float = 10.0) -> None:
        from densenet_ray.train.launcher import PROGRESS_FILE, run_url

        self.url, self.file = run_url(config), PROGRESS_FILE
        self.interval, self.last = interval, time.perf_counter()
        self.started = self.last

    def update(self, epoch: int, batch: int, batches: int, stats: Any, world: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        import json

        from densenet_ray.data.storage import StorageError, open_storage

        self.last = now
        record = {"epoch": epoch + 1, "batch": batch, "batches": batches, "loss": stats.loss, "time": time.time()}
        record["images_per_s"] = stats.samples * world / max(now - self.started, 1e-9)
        record["eta_seconds"] = (now - self.started) / max(stats.steps, 1) * (batches - batch)
        with contextlib.suppress(StorageError, OSError):  # progress display only; never fail training over it
            open_storage(self.url).write_bytes(self.file, json.dumps(record).encode())

    def new_epoch(self) -> None:
        self.started = self.last = time.perf_counter()


def train_loop(config_dict: dict[str, Any]) -> dict[str, Any]:
    """``train_loop_per_worker`` for ``TorchTrainer``; returns the final metrics (rank 0's reach the driver)."""
    import ray.train
    import ray.train.torch

    config = TrainConfig(**config_dict)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.seed + rank)
    random.seed(config.seed + rank)
    device = ray.train.torch.get_device()

    model = create_model(config.model, **config.model_overrides())
    if not ray.train.get_checkpoint():  # a resumed run continues from its own checkpoint
        if config.init_from:
            load_initial_weights(model, config.init_from)
        elif config.pretrained:  # every node fetches into its own torch hub cache
            load_initial_weights(model, pretrained_state_dict(config.model or ""), "--pretrained")
    if config.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = torch.compile(model)  # before the DDP wrap
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None

    start_epoch, start_batch, global_step, best_error = 0, 0, 0, 1.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = torch.load(os.path.join(directory, STATE_FILE), map_location=device, weights_only=False)
            _unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch, start_batch = state["epoch"], state["next_batch"]
            global_step, best_error = state["global_step"], state["best_error"]
            rng_path = os.path.join(directory, f"rng-rank{rank}.pt")
            if os.path.exists(rng_path):
                rng = torch.load(rng_path, weights_only=False)
                torch.random.set_rng_state(rng["torch"])
                random.setstate(rng["python"])

    train_transform = for_dataset(config.dataset, train=True, augment=config.augment)
    eval_transform = for_dataset(config.dataset, train=False)
    assert config.epochs is not None
    progress = _Progress(config)
    final: dict[str, Any] = {}
    first_step_time = 0.0  # wall clock (Unix) when this attempt's first optimizer step finished
    for epoch in range(start_epoch, config.epochs):
        pipeline = PipelineConfig(
            config.data or "",
            "train",
            config.per_worker_batch,
            rank,
            world,
            config.loader_workers,
            epoch=epoch,
            seed=config.seed,
            start_batch=start_batch,
        )
        train_batches = make_loader(pipeline, train_transform)
        per_epoch = train_batches.total_batches
        steps = min(per_epoch, config.limit_train_batches) if config.limit_train_batches else per_epoch

        def set_lr(index: int, epoch: int = epoch, steps: int = steps) -> float:
            rate = learning_rate(config, epoch, index, steps)
            for group in optimizer.param_groups:
                group["lr"] = rate
            return rate

        def state(next_epoch: int, next_batch: int) -> dict[str, Any]:
            return {
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": next_epoch,
                "next_batch": next_batch,
                "global_step": global_step,
                "best_error": best_error,  # noqa: B023 - the value when the checkpoint is taken
                "config": config.to_dict(),
            }

        warm: dict[str, float] = {}

        def mid_epoch(
            index: int, stats: Any, epoch: int = epoch, steps: int = steps, warm: dict[str, float] = warm
        ) -> None:
            nonlocal global_step, first_step_time
            global_step += 1
            first_step_time = first_step_time or time.time()
            if stats.steps == WARMUP_STEPS:
                warm.update(time=time.perf_counter(), samples=stats.samples)
            if rank == 0:
                progress.update(epoch, index + 1, steps, stats, world)
            _maybe_inject_fault(global_step, rank)
            every = config.checkpoint_every_steps
            if every and (index + 1) % every == 0 and index + 1 < steps:
                with tempfile.TemporaryDirectory() as directory:
                    _save(directory, state(epoch, index + 1), rank)
                    metrics = {"epoch": epoch, "step": global_step, "loss": stats.loss, "mid_epoch": True}
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

        started = time.perf_counter()
        progress.new_epoch()
        stats = train_epoch(
            model,
            train_batches,
            optimizer,
            set_lr,
            device,
            config.amp,
            scaler,
            config.channels_last,
            max_steps=steps,
            first_step=start_batch,
            on_step=mid_epoch,
        )
        train_seconds = time.perf_counter() - started
        eval_batches = make_loader(
            PipelineConfig(
                config.data or "",
                config.eval_split or "test",
                config.per_worker_batch,
                rank,
                world,
                config.loader_workers,
                seed=config.seed,
                train=False,
            ),
            eval_transform,
        )
        result = evaluate(model, eval_batches, device, config.amp, config.channels_last, config.limit_eval_batches)
        best_error = min(best_error, result.top1_error)
        images_per_s = stats.samples * world / max(train_seconds, 1e-9)
        steady = images_per_s
        if warm and stats.steps > WARMUP_STEPS:
            steady = (stats.samples - warm["samples"]) * world / max(started + train_seconds - warm["time"], 1e-9)
        final = {
            "epoch": epoch + 1,
            "epochs": config.epochs,
            "step": global_step,
            "loss": stats.loss,
            "train_error": stats.error,
            "test_loss": result.loss,
            "test_error": result.top1_error,
            "test_top5_error": result.top5_error,
            "best_test_error": best_error,
            "test_samples": result.samples,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": images_per_s,
            "steady_images_per_s": steady,
            "first_step_time": first_step_time,
            "seconds_per_iteration": train_seconds / max(stats.steps, 1),
            "epoch_seconds": train_seconds,
            "data_wait_fraction": stats.data_seconds / max(train_seconds, 1e-9),
            "skipped_samples": train_batches.skipped + eval_batches.skipped,
            "peak_memory_mb": _peak_memory_mb(device),
        }
        start_batch = 0
        with tempfile.TemporaryDirectory() as directory:
            _save(directory, state(epoch + 1, 0), rank)
            ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(directory))
    return final
