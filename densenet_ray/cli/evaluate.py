"""``densenet-ray evaluate CHECKPOINT --data URL``: exact top-1/top-5 error of saved weights, in one process."""

from __future__ import annotations

import argparse
import json

import torch

from densenet_ray.errors import UserError
from densenet_ray.paths import absolute_location
from densenet_ray.train.config import PRECISIONS


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("evaluate", help="evaluate a run checkpoint or a torchvision-format state_dict")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run checkpoint directory, state.pt, or a .pth file")
    parser.add_argument("--data", required=True, help="shard directory or s3:// prefix")
    parser.add_argument("--split", help="split to evaluate (default: the run's evaluation split, else test)")
    parser.add_argument("--model", help="model name (needed for a plain state_dict; default: the run's)")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100", "svhn", "imagenet"), help="for transforms")
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader decoding processes (default 1)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default: the run's (auto resolves for this machine, as training does); fp32 is the exact reference",
    )
    parser.add_argument("--ema", action="store_true", help="the moving average of the weights (runs with --ema)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.transforms import for_dataset
    from densenet_ray.models import create_model
    from densenet_ray.train.acceleration import choose
    from densenet_ray.train.checkpoint import load_checkpoint, load_initial_weights, state_dict_of
    from densenet_ray.train.config import NUM_CLASSES
    from densenet_ray.train.engine import StepContext, evaluate
    from densenet_ray.train.run_dir import flat_options

    loaded = load_checkpoint(absolute_location(args.checkpoint), "checkpoint")
    saved = flat_options(loaded.get("config")) if isinstance(loaded, dict) else None
    saved = saved or {}
    dataset = args.dataset or saved.get("dataset") or "cifar10"
    model_name = args.model or saved.get("model")
    if not model_name:
        raise UserError(f"{args.checkpoint} is a plain state_dict: give --model (and --dataset)")
    overrides = {key: saved.get(key) for key in ("depth", "growth_rate", "bottleneck", "reduction", "drop_rate")}
    model = create_model(model_name, num_classes=NUM_CLASSES[dataset], **overrides)
    load_initial_weights(model, state_dict_of(loaded, args.checkpoint, "checkpoint", args.ema), "checkpoint")
    split = args.split or saved.get("eval_split") or "test"
    config = PipelineConfig(args.data, split, args.batch_size, loader_workers=args.loader_workers, train=False)
    loader = make_loader(config, for_dataset(dataset, train=False))
    device = torch.device("cpu")
    precision = choose(args.precision or saved.get("precision") or "auto", False, False, device, 0).precision
    result = evaluate(StepContext(model, device, precision), loader)
    if args.json:
        print(
            json.dumps(
                {
                    "split": split,
                    "precision": precision,
                    "samples": result.samples,
                    "loss": result.loss,
                    "top1_error": result.top1_error,
                    "top5_error": result.top5_error,
                }
            )
        )
    else:
        print(
            f"{model_name} on {split} ({result.samples} samples): top-1 error {100 * result.top1_error:.2f} %, "
            f"top-5 error {100 * result.top5_error:.2f} %, loss {result.loss:.4f} ({precision})"
        )
    return 0
