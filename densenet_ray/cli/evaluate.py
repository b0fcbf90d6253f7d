"""``densenet-ray evaluate CHECKPOINT --data URL``: exact top-1/top-5 error of saved weights, in one process."""

from __future__ import annotations

import argparse
import json
import os

import torch


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("evaluate", help="evaluate a run checkpoint or a torchvision-format state_dict")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run checkpoint directory, state.pt, or a .pth file")
    parser.add_argument("--data", required=True, help="shard directory or s3:// prefix")
    parser.add_argument("--split", help="split to evaluate (default: the run's evaluation split, else test)")
    parser.add_argument("--model", help="model name (needed for a plain state_dict; default: the run's)")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100", "svhn", "imagenet"), help="for transforms")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--loader-workers", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.transforms import for_dataset
    from densenet_ray.models import create_model
    from densenet_ray.train.checkpoint import load_checkpoint, load_initial_weights, state_dict_of
    from densenet_ray.train.config import TrainConfig
    from densenet_ray.train.engine import evaluate

    path = args.checkpoint if "://" in args.checkpoint else os.path.abspath(os.path.expanduser(args.checkpoint))
    loaded = load_checkpoint(path, "checkpoint")
    saved = loaded.get("config") if isinstance(loaded, dict) and isinstance(loaded.get("config"), dict) else None
    run = TrainConfig(**saved) if saved else TrainConfig(dataset=args.dataset or "cifar10", model=args.model)
    if args.dataset:
        run.dataset = args.dataset
    if args.model:
        run.model = args.model
    if not run.model:
        raise ValueError(f"{args.checkpoint} is a plain state_dict: give --model (and --dataset)")
    model = create_model(run.model, **run.model_overrides())
    load_initial_weights(model, state_dict_of(loaded, path, "checkpoint"), "checkpoint")
    split = args.split or run.eval_split or "test"
    config = PipelineConfig(args.data, split, args.batch_size, loader_workers=args.loader_workers, train=False)
    loader = make_loader(config, for_dataset(run.dataset, train=False))
    result = evaluate(model, loader, torch.device("cpu"))
    if args.json:
        print(
            json.dumps(
                {
                    "split": split,
                    "samples": result.samples,
                    "loss": result.loss,
                    "top1_error": result.top1_error,
                    "top5_error": result.top5_error,
                }
            )
        )
    else:
        print(
            f"{run.model} on {split} ({result.samples} samples): top-1 error {100 * result.top1_error:.2f} %, "
            f"top-5 error {100 * result.top5_error:.2f} %, loss {result.loss:.4f}"
        )
    return 0
