"""The choices of the training options (as ``Literal`` types) and the paper's defaults per dataset."""

from __future__ import annotations

import typing
from typing import Literal

Dataset = Literal["cifar10", "cifar100", "svhn", "imagenet", "images"]  # images: your own (classes from the manifest)
Precision = Literal["auto", "fp32", "bf16", "fp16"]  # auto: resolved on each worker (train/acceleration.py)
Decoder = Literal["cpu", "gpu"]  # gpu: data/reading/device_decode.py
AugmentPolicy = Literal["none", "randaugment", "trivialaugment", "autoaugment"]  # torchvision.transforms.v2's
LrSchedule = Literal["step", "cosine"]
Optimizer = Literal["sgd", "adamw"]
Weighting = Literal["none", "balanced"]  # balanced: from the training split's class counts
DATASETS: tuple[str, ...] = typing.get_args(Dataset)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}  # the paper's datasets
DATASET_NAMES = {"images": "your own images (`densenet-ray train images`)"}  # in messages, where a name needs words
# The training families (``densenet-ray train FAMILY``) and the datasets each trains.
FAMILIES = {"cifar": ("cifar10", "cifar100", "svhn"), "imagenet": ("imagenet",), "images": ("images",)}
# Paper section 4.2: batch 64 / 300 epochs on CIFAR, 64 / 40 on SVHN, 256 / 90 on ImageNet.
DEFAULT_MODEL = {"cifar10": "densenet_bc100_k12", "cifar100": "densenet_bc100_k12", "svhn": "densenet_bc100_k12"}
DEFAULT_MODEL.update(imagenet="densenet121", images="densenet121")  # images: BC-100 for small images (dataset_fit)
DEFAULT_BATCH = {"cifar10": 64, "cifar100": 64, "svhn": 64, "imagenet": 256, "images": 64}
DEFAULT_EPOCHS = {"cifar10": 300, "cifar100": 300, "svhn": 40, "imagenet": 90, "images": 30}
WHICH = ("last", "best")  # which checkpoint of a run: the last committed, or the one with the lowest test error
WEIGHTS = ("ema", "raw")  # which weights of a checkpoint: the moving average (--ema runs) or the trained ones
EVAL_SPLIT = {"cifar10": "test", "cifar100": "test", "svhn": "test", "imagenet": "val", "images": "test"}
