"""The learning-rate schedule: the original code's step and cosine schedules, with optional linear warmup."""

from __future__ import annotations

import math

from densenet_ray.train.config.options import TrainConfig


def learning_rate(options: TrainConfig, epoch: int, iteration: int, iterations_per_epoch: int) -> float:
    """The learning rate for 0-indexed ``epoch`` and ``iteration`` (optimizer steps) of resolved ``options``.

    step, CIFAR/SVHN: divided by 10 once the 1-indexed epoch reaches 50 % and again at 75 % of the epochs (the
    original code's rule; for 300 epochs: 149 at 0.1, 75 at 0.01, 76 at 0.001). A run of 1 or 2 epochs would then
    train at no epoch at its rate (1 epoch: at lr / 100 throughout), so it divides at 50 % and 75 % of its optimizer
    steps instead (:func:`paper_rule_trains`). step, ImageNet: 0.1 ** floor(epoch / 30). cosine: per iteration,
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
    if paper_rule_trains(epochs):
        one_indexed = epoch + 1
        drops = int(one_indexed >= 0.5 * epochs) + int(one_indexed >= 0.75 * epochs)
    else:
        total = epochs * iterations_per_epoch
        drops = int(current >= 0.5 * total) + int(current >= 0.75 * total)
    return factor * options.lr * 0.1**drops


def paper_rule_trains(epochs: int) -> bool:
    """Whether the step rule's epoch drops leave the first epoch at the full rate: 3 epochs or more."""
    return math.ceil(0.5 * epochs) > 1


def mean_rate(options: TrainConfig, epoch: int, iterations_per_epoch: int) -> float:
    """The mean of :func:`learning_rate` over 0-indexed ``epoch``'s optimizer steps."""
    steps = max(iterations_per_epoch, 1)
    return sum(learning_rate(options, epoch, index, steps) for index in range(steps)) / steps
