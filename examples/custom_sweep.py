"""A sweep of your own from Python: the learning rate against the depth of DenseNet-BC, on Ray Tune.

    python examples/custom_sweep.py --data SHARDS
    python examples/custom_sweep.py --data SHARDS --epochs 1 --limit-train-batches 20

Each trial is a complete training run under the sweep's directory; the same --name resumes an interrupted sweep.
"""

from __future__ import annotations

import argparse

import densenet_ray as dr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="shard directory or s3:// prefix")
    parser.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.1], help="learning rates to try")
    parser.add_argument("--depth", type=int, nargs="+", default=[40], help="DenseNet-BC depths to try")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-train-batches", type=int, default=0, help="at most N batches an epoch (0: all)")
    parser.add_argument("--storage", help="where sweeps live (default ~/densenet-ray/sweeps)")
    parser.add_argument("--name", help="the sweep's name; the same name resumes it")
    args = parser.parse_args()

    space = {  # the same mapping a `densenet-ray tune custom --space FILE.yaml` file holds
        "scheduler": "fifo",
        "space": {"lr": {"grid": args.lr}, "depth": {"grid": args.depth}},
    }
    storage = {"storage": args.storage} if args.storage else {}
    result = dr.sweep(
        "custom",
        space=space,
        name=args.name,
        data=args.data,
        model="densenet_bc100_k12",
        epochs=args.epochs,
        batch_size=16,
        loader_workers=0,
        limit_train_batches=args.limit_train_batches,
        **storage,
    )
    print(f"sweep saved in {result.experiment}")
    for row in sorted(result.rows, key=lambda row: row.best_test_error if row.best_test_error is not None else 1.0):
        error = "-" if row.best_test_error is None else f"{100 * row.best_test_error:.2f} %"
        print(f"{row.label}: {row.status}, best test error {error}")


if __name__ == "__main__":
    main()
