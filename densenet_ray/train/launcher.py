"""Starting a training run on Ray Train: local Ray by default, the cluster when ``RAY_ADDRESS`` is set.

The run directory is ``<storage>/<name>``: Ray's checkpoints, ``config.yaml`` (the resolved configuration) and
``metrics.jsonl`` (one JSON line per report, written by a ``UserCallback`` in the controller, so curves can be read
without Ray). The same ``--name`` resumes the run from its last committed checkpoint.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import yaml

from densenet_ray.data.storage import StorageError, child_url, open_storage
from densenet_ray.train.config import TrainConfig

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
PROGRESS_FILE = "progress.json"  # rank 0's in-epoch progress, rewritten every few seconds


def run_name(config: TrainConfig) -> str:
    return config.name or f"{config.dataset}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def storage_root(config: TrainConfig) -> str:
    assert config.storage is not None
    return config.storage if "://" in config.storage else os.path.abspath(os.path.expanduser(config.storage))


def run_url(config: TrainConfig) -> str:
    """The run directory: ``<storage>/<name>``."""
    return child_url(storage_root(config), run_name(config))


def _metrics_callback(run_url: str) -> Any:
    import ray.train

    class MetricsLog(ray.train.UserCallback):
        """Appends rank 0's metrics of every report to metrics.jsonl (atomically rewritten; the file is small)."""

        def __init__(self) -> None:
            self.run_url = run_url

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            storage = open_storage(self.run_url)
            existing = storage.read_bytes(METRICS_FILE) if storage.exists(METRICS_FILE) else b""
            line = json.dumps({"time": time.time(), **metrics[0]}, default=float) + "\n"
            storage.write_bytes(METRICS_FILE, existing + line.encode())

    return MetricsLog()


def _follow(run_dir: str, stop: threading.Event, print_line: Any) -> None:
    """Driver-side progress: a line per report (metrics.jsonl) and in-epoch lines (progress.json)."""
    seen, last_progress = 0, b""
    storage = open_storage(run_dir)
    while not stop.wait(1.0) or seen == 0:
        try:
            progress = storage.read_bytes(PROGRESS_FILE) if storage.exists(PROGRESS_FILE) else b""
            if progress and progress != last_progress:
                last_progress = progress
                p = json.loads(progress)
                print_line(
                    f"epoch {p['epoch']} [{p['batch']}/{p['batches']}]: loss {p['loss']:.4f}, "
                    f"{p['images_per_s']:.1f} img/s, epoch ETA {p['eta_seconds'] / 60:.1f} min"
                )
        except (StorageError, OSError, ValueError, KeyError):
            pass
        try:
            lines = storage.read_bytes(METRICS_FILE).decode().splitlines() if storage.exists(METRICS_FILE) else []
        except (StorageError, OSError):
            continue
        for line in lines[seen:]:
            record = json.loads(line)
            if record.get("mid_epoch"):
                print_line(f"epoch {record['epoch'] + 1} step {record['step']}: loss {record['loss']:.4f}")
                continue
            remaining = (record["epochs"] - record["epoch"]) * record["epoch_seconds"]
            print_line(
                f"epoch {record['epoch']}/{record['epochs']}: loss {record['loss']:.4f}, "
                f"test error {100 * record['test_error']:.2f} % (best {100 * record['best_test_error']:.2f} %), "
                f"{record['images_per_s']:.1f} img/s, ETA {remaining / 60:.1f} min"
            )
        seen = len(lines)
        if stop.is_set():
            return


DATA_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "densenet-ray")
HOLDOUT_PER_CLASS = 500  # a class-folder source with no test split: hold out the last 500 images of every class


def ensure_data(config: TrainConfig, print_line: Any = print) -> str:
    """``--data``, or ``~/.cache/densenet-ray/<dataset>`` built on first use (downloaded, or from ``--source``)."""
    from densenet_ray.data.build import build_dataset
    from densenet_ray.data.manifest import find_manifests
    from densenet_ray.data.sources import FileListSource, imagefolder_source, open_source, split_holdout

    if config.data:
        return config.data
    if config.dataset == "imagenet":
        raise ValueError("--data is required for ImageNet (build shards with `densenet-ray data build imagefolder`)")
    directory = os.path.join(DATA_CACHE, config.dataset)
    # Caches written before shards were shuffled at build time (order_seed None) hold class-sorted shards: rebuild.
    found = find_manifests(directory) if os.path.isdir(directory) else []
    have = {manifest.split for _, manifest in found if manifest.order_seed is not None}
    if {"train", config.eval_split} <= have:
        return directory
    print_line(f"building {config.dataset} shards in {directory} (first use)")
    downloads = os.path.join(DATA_CACHE, "downloads")
    try:
        parts = [open_source(config.dataset, config.source, split, downloads) for split in ("train", "test")]
    except ValueError:
        if not config.source or config.dataset == "svhn":
            raise
        # Not the official tarball: a class-folder directory or tar (like the CIFAR-10 JPEG set), train only.
        folder = imagefolder_source(config.source)
        parts = list(split_holdout(folder, HOLDOUT_PER_CLASS)) if isinstance(folder, FileListSource) else [folder]
        print_line(f"{config.source} has no test split: holding out the last {HOLDOUT_PER_CLASS} images per class")
    for part in parts:
        manifest = build_dataset(part, directory, shard_size=1000)
        print_line(f"  {manifest.split}: {manifest.num_samples} samples in {len(manifest.shards)} shards")
    return directory


SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def remove_orphan_checkpoints(run_dir: str) -> list[str]:
    """Delete checkpoint directories Ray uploaded but never committed (a crash between upload and the controller's
    poll leaves them, RAY.md section 1); returns their names. Resuming only ever uses committed checkpoints."""
    import shutil

    from densenet_ray.data.storage import LocalStorage

    storage = open_storage(run_dir)
    if not storage.exists(SNAPSHOT_FILE):
        return []
    snapshot = json.loads(storage.read_bytes(SNAPSHOT_FILE))
    committed = {result["checkpoint_dir_name"] for result in snapshot.get("checkpoint_results", [])}
    latest = snapshot.get("latest_checkpoint_result") or {}
    committed.add(latest.get("checkpoint_dir_name", ""))
    objects = [info.name for info in storage.list("checkpoint_")]
    orphans = sorted({name.split("/", 1)[0] for name in objects if "/" in name} - committed)
    for orphan in orphans:
        if isinstance(storage, LocalStorage):
            shutil.rmtree(os.path.join(storage.root, orphan), ignore_errors=True)
        else:
            for name in objects:
                if name.startswith(orphan + "/"):
                    storage.delete(name)
    return orphans


def ray_storage(root: str) -> tuple[str, Any]:
    """Ray's ``(storage_path, storage_filesystem)`` for a storage root.

    An ``s3://`` root with a custom endpoint (in the URL's query, or ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` as
    for the data) gets a pyarrow ``S3FileSystem`` and the prefix-stripped path Ray wants with it (RAY.md section 1).
    The filesystem holds no credentials: every process takes them from the standard AWS chain.
    """
    from urllib.parse import parse_qs, urlparse

    from densenet_ray.data.storage import S3Storage, custom_endpoint

    if not root.startswith("s3://"):
        return root, None
    storage = S3Storage(root)
    endpoint = custom_endpoint(storage.endpoint_url)
    if not endpoint:
        return storage.url, None
    import pyarrow.fs

    parsed = urlparse(endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    region = parse_qs(urlparse(root).query).get("region", [region])[0]
    filesystem = pyarrow.fs.S3FileSystem(
        endpoint_override=parsed.netloc, scheme=parsed.scheme or "https", region=region
    )
    return f"{storage.bucket}/{storage.prefix}".rstrip("/"), filesystem


def _worker_env() -> dict[str, str]:
    """Our own settings (DENSENET_RAY_*) for the workers; credentials travel by the cluster's standard means."""
    return {key: value for key, value in os.environ.items() if key.startswith("DENSENET_RAY_")}


def _init_ray(config: TrainConfig) -> bool:
    """Connect to ``RAY_ADDRESS`` or start a local instance sized for the run; True when started here."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return False
    cpus = max(os.cpu_count() or 1, config.workers * config.cpus_per_worker)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    return True


def launch(
    config: TrainConfig, print_line: Any = print, callbacks: Sequence[Any] = (), follow: bool = True
) -> dict[str, Any]:
    """Run ``config`` on Ray Train; returns the final metrics plus ``run_dir``. Raises on failure.

    ``callbacks`` are more Ray Train ``UserCallback``s (a Tune trial adds its ``TuneReportCallback``); ``follow``
    prints progress lines while the run goes."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from densenet_ray.train.worker import train_loop

    config = config.resolved()
    config.data = ensure_data(config, print_line)
    from densenet_ray.data.manifest import load_manifest

    load_manifest(config.data, "train")  # a clear error before any worker starts
    load_manifest(config.data, config.eval_split)
    name = config.name = run_name(config)
    root, url = storage_root(config), run_url(config)
    run_storage = open_storage(url)
    try:
        run_storage.write_bytes(CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    except (StorageError, OSError) as error:
        raise StorageError(f"--storage {config.storage} is not writable ({error})") from None

    remove_orphan_checkpoints(url)  # left by a crashed earlier attempt of this run
    storage_path, filesystem = ray_storage(root)
    started_here = _init_ray(config)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(url, stop, print_line), daemon=True)
    try:
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=config.to_dict(),
            scaling_config=ScalingConfig(
                num_workers=config.workers,
                use_gpu=config.gpu,
                resources_per_worker={
                    "CPU": config.cpus_per_worker,
                    **({"GPU": 1} if config.gpu else {}),
                    **(config.worker_resources or {}),
                },
            ),
            run_config=RunConfig(
                name=name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                failure_config=FailureConfig(max_failures=config.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
                callbacks=[_metrics_callback(url), *callbacks],
                worker_runtime_env={"env_vars": _worker_env()},
            ),
        )
        if follow:
            follower.start()
        started = time.perf_counter()
        result = trainer.fit()
        wall = time.perf_counter() - started
    finally:
        stop.set()
        if follower.is_alive():
            follower.join(timeout=5)
        if started_here:
            ray.shutdown()
    removed = remove_orphan_checkpoints(url)
    if removed:
        print_line(f"removed {len(removed)} checkpoint(s) Ray never committed: {', '.join(removed)}")
    final = dict(result.return_value or result.metrics or {})
    # Ray's path is prefix-stripped with a filesystem; the checkpoint's URL is the run directory's child.
    checkpoint = child_url(url, os.path.basename(result.checkpoint.path.rstrip("/"))) if result.checkpoint else None
    final.update(run_dir=url, wall_seconds=wall, checkpoint=checkpoint)
    return final
