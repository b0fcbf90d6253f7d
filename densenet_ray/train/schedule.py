"""The learning-rate schedule: the original code's step and cosine schedules, with optional linear warmup."""

from __future__ import annotations

import math

from densenet_ray.train.config.options import TrainConfig


def learning_rate(options: TrainConfig, epoch: int, iteration: int, iterations_per_epoch: int) -> float:
    """The learning rate for 0-indexed ``epoch`` and ``iteration`` (optimizer steps) of resolved ``options``.

    step, CIFAR/SVHN: divided by 10 once the 1-indexed epoch reaches 50 % and again at 75 % of the epochs (for 300
    epochs: 149 at 0.1, 75 at 0.01, 76 at 0.001). step, ImageNet: 0.1 ** floor(epoch / 30). cosine: per iteration,
    0.5 * lr * (1 + cos(pi * t / T)) with t counted over the whole run.

    ``options.warmup`` epochs of linear warmup scale the schedule's rate by ``(t + 1) / T_w`` for the first ``T_w``
    steps (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 2.2: gradual warmup).
    """
    epochs = options.epochs
    assert epochs is not None, "a resolved config's options (resolve() fills in the epochs)"
    current = epoch * iterations_per_epoch + iteration
    warmup_steps = round(options.warmup * iterations_per_epoch)
    factor = (current + 1) / warmup_steps if current < warmup_steps else 1.0
    if options.lr_schedule == "cosine":
        total = epochs * iterations_per_epoch
        return factor * 0.5 * options.lr * (1 + math.cos(math.pi * current / total))
    if options.dataset == "imagenet":
        return factor * options.lr * 0.1 ** (epoch // 30)
    one_indexed = epoch + 1
    drops = int(one_indexed >= 0.5 * epochs) + int(one_indexed >= 0.75 * epochs)
    return factor * options.lr * 0.1**drops
