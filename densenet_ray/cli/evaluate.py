"""``densenet-ray evaluate CHECKPOINT --data URL``: exact top-1/top-5 error of saved weights, in one process."""

from __future__ import annotations

import argparse
import json

import torch

from densenet_ray.train.config import DATASETS, PRECISIONS
from densenet_ray.train.trained import WEIGHTS, WHICH


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("evaluate", help="evaluate a run checkpoint or a torchvision-format state_dict")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a run checkpoint directory, state.pt, a .pth file, "
                        "or a run directory (see --which); local or s3://")  # fmt: skip
    parser.add_argument("--data", required=True, help="shard directory or s3:// prefix")
    parser.add_argument("--split", help="split to evaluate (default: the run's evaluation split, else test)")
    add_model_choice(parser)
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader decoding processes (default 1)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default: the run's (auto resolves for this machine, as training does); fp32 is the exact reference",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=evaluate_command)


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a trained model: which checkpoint of a run, which weights, and, for a plain state_dict,
    which model and dataset (``evaluate``, ``export`` and ``predict`` share them)."""
    parser.add_argument("--which", choices=WHICH, default="last", help="for a run directory: its last committed "
                        "checkpoint (default) or the one with the best test error")  # fmt: skip
    parser.add_argument("--weights", choices=WEIGHTS, help="the moving average of the weights (ema; the default when "
                        "the run trained with --ema) or the raw weights")  # fmt: skip
    parser.add_argument("--model", help="model name (needed for a plain state_dict; default: the run's)")
    parser.add_argument("--dataset", choices=DATASETS, help="the dataset of a plain state_dict (default: the run's, "
                        "else cifar10): its class count and evaluation transform")  # fmt: skip


def evaluate_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.transforms import for_dataset
    from densenet_ray.train.acceleration import choose
    from densenet_ray.train.engine import StepContext, evaluate
    from densenet_ray.train.trained import load_trained

    trained = load_trained(args.checkpoint, args.which, args.weights, args.model, args.dataset)
    split = args.split or trained.options.get("eval_split") or "test"
    config = PipelineConfig(args.data, split, args.batch_size, loader_workers=args.loader_workers, train=False)
    loader = make_loader(config, for_dataset(trained.dataset, train=False))
    device = torch.device("cpu")
    precision = choose(args.precision or trained.options.get("precision") or "auto", False, False, device, 0).precision
    result = evaluate(StepContext(trained.network, device, precision), loader)
    if args.json:
        values = {"split": split, "precision": precision, "weights": trained.weights, "checkpoint": trained.source}
        values.update(samples=result.samples, loss=result.loss, top1_error=result.top1_error)
        print(json.dumps({**values, "top5_error": result.top5_error}))
    else:
        print(
            f"{trained.name} ({trained.weights} weights) on {split} ({result.samples} samples): top-1 error "
            f"{100 * result.top1_error:.2f} %, top-5 error {100 * result.top5_error:.2f} %, loss {result.loss:.4f} "
            f"({precision})"
        )
    return 0
