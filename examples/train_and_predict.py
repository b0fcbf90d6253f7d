"""Train DenseNet-BC on CIFAR-10 from Python, then load the run's best checkpoint, classify images and evaluate it.

    python examples/train_and_predict.py --data SHARDS IMAGE...            # shards from `densenet-ray data build`
    python examples/train_and_predict.py --source ../shared/data/cifar10-jpeg/train.tar --epochs 1 IMAGE...

Without --data the CIFAR-10 shards are built on first use into ~/.cache/densenet-ray/cifar10 (from --source, or
downloaded). Ray is found as `densenet-ray train` finds it: RAY_ADDRESS, a cluster started on this machine, or a
private local instance.
"""

from __future__ import annotations

import argparse

import densenet_ray as dr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="images to classify: files, directories, globs or .tar shards")
    parser.add_argument("--data", help="shard directory or s3:// prefix (default: the CIFAR-10 cache)")
    parser.add_argument("--source", help="without --data: the local CIFAR-10 copy to build the cache from")
    parser.add_argument("--depth", type=int, default=40, help="DenseNet-BC depth L (default 40)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-train-batches", type=int, default=0, help="at most N batches an epoch (0: all)")
    parser.add_argument("--storage", help="where runs live (default ~/densenet-ray/runs)")
    parser.add_argument("--name", help="the run's name; the same name resumes it")
    args = parser.parse_args()

    config = dr.TrainConfig(
        data=args.data,
        source=args.source,
        model="densenet_bc100_k12",
        depth=args.depth,
        epochs=args.epochs,
        lr_schedule="cosine",  # per iteration: the step schedule would divide the rate by 100 in a 1-epoch run
        workers=args.workers,
        batch_size=args.batch_size,
        loader_workers=0,
        limit_train_batches=args.limit_train_batches,
        storage=args.storage,
        name=args.name,
    )
    result = dr.fit(config)
    last = result.metrics[-1]
    print(f"trained {result.run_dir}: {last['epoch']} epoch(s), test error {100 * last['test_error']:.2f} %")
    print(f"best checkpoint: {result.best_checkpoint}")

    classifier = dr.load(result.run_dir, which="best")
    for prediction in classifier.predict(args.images, top=3):
        if prediction.error:
            print(f"{prediction.image}: {prediction.error}")
            continue
        ranked = ", ".join(f"{name} {100 * probability:.1f} %" for name, probability in prediction.top)
        print(f"{prediction.image}: {ranked}")

    scores = dr.evaluate(result.run_dir, which="best")  # on the run's own shards and evaluation split
    print(
        f"evaluated on {scores['split']} ({scores['samples']} images): top-1 error {100 * scores['top1_error']:.2f} %"
    )


if __name__ == "__main__":
    main()
