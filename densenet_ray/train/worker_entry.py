"""The function Ray Train runs in every worker, in a module of its own: the driver hands it to Ray by name (cloudpickle
pickles a module's function as a reference), so the driver imports none of the worker's libraries (torchvision and
the data pipeline, about 2 CPU-seconds a run on 2 cores, measured); each worker imports them when it starts."""

from __future__ import annotations

from typing import Any


def train_loop(document: dict[str, Any]) -> dict[str, Any]:
    """``train_loop_per_worker`` for ``TorchTrainer``: the resolved config's document in, rank 0's last epoch record
    out (the metrics it reported)."""
    from densenet_ray.train.worker import run_worker

    return run_worker(document)
