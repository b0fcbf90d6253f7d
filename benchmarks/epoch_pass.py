"""One training epoch of one rank through whichever ``densenet_ray`` is first on ``PYTHONPATH``; prints one JSON line.

``benchmarks/epochs.py`` runs it against this checkout and against the revision before exact epochs, so both
pipelines are measured by the same code. It uses only what both revisions share: ``PipelineConfig``,
``make_loader`` and ``cifar_train``. Before exact epochs ``batch_size`` was per rank; since, it is the global batch.

Usage::

    python benchmarks/epoch_pass.py DATA --rank 0 --world-size 2 --loader-workers 2 --rank-batch 32
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter


def entropy_bits(labels: list[int]) -> float:
    """The Shannon entropy of a batch's class distribution, in bits."""
    counts = Counter(labels)
    total = len(labels)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def main() -> int:
    from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.reading.transforms import cifar_train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--rank-batch", type=int, default=64)
    parser.add_argument("--epoch", type=int, default=0)
    args = parser.parse_args()
    exact = hasattr(PipelineConfig, "layout")  # the revision with exact epochs takes the global batch
    batch = args.rank_batch * args.world_size if exact else args.rank_batch
    config = PipelineConfig(
        data=args.data,
        split="train",
        batch_size=batch,
        rank=args.rank,
        world_size=args.world_size,
        loader_workers=args.loader_workers,
        epoch=args.epoch,
        seed=0,
    )
    started = time.perf_counter()
    samples, entropies, labels_seen = 0, [], []
    for _, labels in make_loader(config, cifar_train()):
        samples += len(labels)
        batch_labels = labels.tolist()
        entropies.append(entropy_bits(batch_labels))
        labels_seen += batch_labels
    seconds = time.perf_counter() - started
    result = {
        "exact": exact,
        "samples": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "batches": len(entropies),
        "batch_entropy_bits": sum(entropies) / max(len(entropies), 1),
        "labels": labels_seen,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
