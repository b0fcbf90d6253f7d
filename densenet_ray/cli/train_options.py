"""The one definition of every training option's flag, shared by ``train`` and ``tune``.

Every flag defaults to ``None``, so a ``--config`` file's value is overridden only by a flag the user gave, and the
paper's defaults are filled in by :func:`densenet_ray.train.resolved.resolve`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any

from densenet_ray.train.config import AUGMENT_POLICIES, DECODERS, PRECISIONS

FLAG = {"action": "store_const", "const": True, "default": None}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON; expected an object like '{{\"fake_gpu\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


# (group, flag, argparse keywords); the destination is the TrainConfig field of the flag's name.
OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("data", "--data", {"help": "shard directory or s3:// prefix (from `densenet-ray data build`)"}),
    ("data", "--source", {"help": "without --data: build ~/.cache/densenet-ray/<dataset> from this local copy on "
                          "first use (official tarball, .mat directory, or class-folder dir/tar)"}),
    ("data", "--eval-split", {"help": "evaluation split (default test for CIFAR/SVHN, val for ImageNet)"}),
    ("data", "--loader-workers", {"type": int, "help": "DataLoader processes per worker decoding images (default 1; "
                                  "0 decodes in the training process)"}),
    ("data", "--decode", {"choices": DECODERS, "help": "where ImageNet JPEGs are decoded and augmented: cpu "
                          "(default; in the loader processes) or gpu (whole batches on each worker's GPU)"}),
    ("data", "--no-augment", {"dest": "augment", "action": "store_const", "const": False,
                              "help": "train without the paper's augmentation (crops and flips)"}),
    ("model", "--model", {"help": "registered model name (see `densenet-ray models`)"}),
    ("model", "--depth", {"type": int, "help": "L, the network depth (default: the model's)"}),
    ("model", "--growth-rate", {"type": int, "help": "k, feature maps each dense layer adds (default: the model's)"}),
    ("model", "--bottleneck", {"dest": "bottleneck", **FLAG, "help": "B: 1x1 bottleneck convolutions"}),
    ("model", "--no-bottleneck", {"dest": "bottleneck", "action": "store_const", "const": False,
                                  "help": "no bottleneck convolutions (the basic DenseNet)"}),
    ("model", "--reduction", {"type": float, "help": "compression theta of the transition layers (0.5 for C)"}),
    ("model", "--drop-rate", {"type": float, "help": "dropout after each convolution (paper: 0.2 without "
                              "augmentation)"}),
    ("model", "--memory-efficient", {**FLAG, "help": "recompute concatenation and BN in backward: memory grows "
                                     "linearly with depth"}),
    ("model", "--init-from", {"help": "start from these weights: a run checkpoint or a torchvision-format "
                              "state_dict (a classifier of another class count is re-initialised)"}),
    ("model", "--pretrained", {**FLAG, "help": "start from torchvision's ImageNet weights (densenet121/161/169/201)"}),
    ("optimisation", "--batch-size", {"type": int, "help": "global batch size (paper: 64 CIFAR/SVHN, 256 ImageNet)"}),
    ("optimisation", "--epochs", {"type": int, "help": "epochs (paper: 300 CIFAR, 40 SVHN, 90 ImageNet)"}),
    ("optimisation", "--lr", {"type": float, "help": "initial learning rate (default 0.1)"}),
    ("optimisation", "--lr-schedule", {"choices": ("step", "cosine"), "help": "step (the paper's /10 drops, "
                                       "default) or cosine per iteration"}),
    ("optimisation", "--seed", {"type": int, "help": "seed of the initialisation, data order and augmentation"}),
    ("execution", "--cpus-per-worker", {"type": int, "help": "CPUs each Ray Train worker reserves (default 1)"}),
    ("execution", "--gpu", {**FLAG, "help": "one GPU per worker (NCCL DDP)"}),
    ("execution", "--worker-resources", {"type": _json_object, "metavar": "JSON", "help": "custom resources each "
                                         "worker also needs, e.g. '{\"accelerator_type:A100\": 0.001}'"}),
    ("execution", "--precision", {"choices": PRECISIONS, "help": "auto (default): bf16 autocast where the worker's "
                                  "hardware multiplies bf16 natively, else fp32; fp32 is the exact reference"}),
    ("execution", "--channels-last", {**FLAG, "help": "channels-last memory format (default: auto, where faster)"}),
    ("execution", "--no-channels-last", {"dest": "channels_last", "action": "store_const", "const": False,
                                         "help": "NCHW memory format"}),
    ("execution", "--compile", {**FLAG, "help": "torch.compile the model (default: auto, for runs of 500+ steps "
                                "where inductor has a compiler)"}),
    ("execution", "--no-compile", {"dest": "compile", "action": "store_const", "const": False,
                                   "help": "run the model eagerly"}),
    ("execution", "--sync-bn", {**FLAG, "help": "synchronise BatchNorm statistics across GPU workers"}),
    ("execution", "--max-failures", {"type": int, "help": "worker-group restarts Ray may make (default 0; -1 "
                                     "unlimited)"}),
    ("execution", "--checkpoint-every-steps", {"type": int, "help": "also checkpoint every N optimizer steps within "
                                               "an epoch"}),
    ("execution", "--keep-checkpoints", {"type": int, "help": "checkpoints kept in the run directory (default 2)"}),
    ("execution", "--limit-train-batches", {"type": int, "help": "at most N training batches per epoch (debugging)"}),
    ("execution", "--limit-eval-batches", {"type": int, "help": "at most N evaluation batches (debugging)"}),
    ("recipe", "--label-smoothing", {"type": float, "metavar": "EPS", "help": "label smoothing of the training "
                                     "loss (F.cross_entropy; 0.1 is common; default 0)"}),
    ("recipe", "--mixup", {"type": float, "metavar": "ALPHA", "help": "MixUp batches with Beta(ALPHA, ALPHA) "
                           "(transforms.v2.MixUp; 0.2 is common; default 0: off)"}),
    ("recipe", "--cutmix", {"type": float, "metavar": "ALPHA", "help": "CutMix batches with Beta(ALPHA, ALPHA) "
                            "(transforms.v2.CutMix; 1.0 is common; default 0: off)"}),
    ("recipe", "--mix-prob", {"type": float, "metavar": "P", "help": "share of batches MixUp/CutMix mixes "
                              "(default 1)"}),
    ("recipe", "--mix-switch-prob", {"type": float, "metavar": "P", "help": "with --mixup and --cutmix: probability "
                                     "of CutMix for a mixed batch (default 0.5)"}),
    ("recipe", "--augment-policy", {"choices": AUGMENT_POLICIES, "help": "per-sample augmentation policy from "
                                    "transforms.v2 (default none)"}),
    ("recipe", "--randaugment", {"dest": "augment_policy", "action": "store_const", "const": "randaugment",
                                 "help": "RandAugment (transforms.v2.RandAugment): --augment-policy randaugment"}),
    ("recipe", "--trivialaugment", {"dest": "augment_policy", "action": "store_const", "const": "trivialaugment",
                                    "help": "TrivialAugmentWide: --augment-policy trivialaugment"}),
    ("recipe", "--autoaugment", {"dest": "augment_policy", "action": "store_const", "const": "autoaugment",
                                 "help": "AutoAugment, the dataset's learned policy: --augment-policy autoaugment"}),
    ("recipe", "--randaugment-ops", {"type": int, "metavar": "N", "help": "RandAugment operations per image "
                                     "(default 2)"}),
    ("recipe", "--randaugment-magnitude", {"type": int, "metavar": "M", "help": "RandAugment magnitude, 0-30 "
                                           "(default 9)"}),
    ("recipe", "--random-erasing", {"type": float, "metavar": "P", "help": "erase a random rectangle of a "
                                    "training image with probability P (transforms.v2.RandomErasing; default 0)"}),
    ("recipe", "--ema", {"type": float, "nargs": "?", "const": 0.9998, "metavar": "DECAY", "help": "also keep, "
                         "evaluate and checkpoint an exponential moving average of the weights and BN buffers "
                         "(swa_utils.AveragedModel), updated every optimizer step (DECAY default 0.9998)"}),
    ("recipe", "--warmup", {"type": float, "metavar": "EPOCHS", "help": "linear learning-rate warmup over the "
                            "first EPOCHS epochs, per iteration (default 0)"}),
    ("recipe", "--clip-grad-norm", {"type": float, "metavar": "NORM", "help": "clip the gradients' total 2-norm "
                                    "to NORM before each optimizer step (default 0: off)"}),
    ("recipe", "--accumulate", {"type": int, "metavar": "N", "help": "add up N batches' gradients per optimizer "
                                "step: --batch-size B --accumulate N steps as batch N*B (default 1)"}),
    ("recipe", "--no-decay-norm-bias", {**FLAG, "help": "no weight decay on BatchNorm weights and biases"}),
    ("tracking", "--log", {"metavar": "SERVICES", "help": "also log to mlflow, wandb or mlflow,wandb (through "
                           "ray.air.integrations; extras densenet-ray[mlflow], [wandb]); TensorBoard is always "
                           "written to <run>/tensorboard"}),
    ("tracking", "--tracking-uri", {"metavar": "URI", "help": "MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                    "else sqlite:///<storage>/mlflow.db for local storage)"}),
    ("tracking", "--log-every-steps", {"type": int, "metavar": "N", "help": "loss and learning rate to TensorBoard "
                                       "(and --log) every N steps (default 50)"}),
]  # fmt: skip


def destination(flag: str, keywords: dict[str, Any]) -> str:
    return keywords.get("dest", flag.removeprefix("--").replace("-", "_"))


def add_training_options(parser: argparse.ArgumentParser, fields: Iterable[str] | None = None) -> list[str]:
    """Add the flags of ``fields`` (TrainConfig names; all when None), grouped; returns the fields added."""
    wanted = None if fields is None else set(fields)
    groups: dict[str, Any] = {}
    added: list[str] = []
    for group, flag, keywords in OPTIONS:
        field = destination(flag, keywords)
        if wanted is not None and field not in wanted:
            continue
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        groups[group].add_argument(flag, **keywords)
        if field not in added:
            added.append(field)
    return added
