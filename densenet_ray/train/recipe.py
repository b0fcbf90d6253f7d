"""The modern recipe's training-side parts, each from a maintained library: batch mixing (torchvision's ``v2.MixUp``
and ``v2.CutMix``), the weights' exponential moving average (``torch.optim.swa_utils``) and the optimizer's
parameter groups. Pure PyTorch, no Ray; the per-sample augmentation policies live in ``data/reading/transforms.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from densenet_ray.data.reading.epoch_plan import mix

BatchMixer = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def batch_mixer(
    mixup: float, cutmix: float, probability: float, switch: float, num_classes: int, seed: int
) -> BatchMixer | None:
    """``mixer(key, images, labels) -> (images, soft targets)``: MixUp with Beta(``mixup``, ``mixup``), CutMix with
    Beta(``cutmix``, ``cutmix``), or (both on) CutMix with probability ``switch``, applied to a ``probability``
    share of batches; None when both alphas are 0. Batches left unmixed get one-hot targets, so every target is a
    distribution over the classes.

    torchvision draws the mixing from torch's global CPU generator; each call draws from its own seed (the run's
    ``seed`` and ``key``, which the caller makes unique per batch and rank), so a resumed run mixes its batches as an
    uninterrupted one would, and the caller's generator (dropout) is left as it was.
    """
    from torchvision.transforms import v2  # here: the driver imports this module, and needs no torchvision (2 s)

    choices = [v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup else []
    choices += [v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix else []
    if not choices:
        return None
    mixing: v2.Transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices, p=[1 - switch, switch])

    def mixer(key: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix(seed, key))
            if float(torch.rand(())) < probability:
                return mixing(images, labels)
        return images, nn.functional.one_hot(labels, num_classes).to(images.dtype)

    return mixer


class WeightAverage:
    """The exponential moving average of a model's weights and BatchNorm buffers (``AveragedModel`` with
    ``get_ema_multi_avg_fn``, ``use_buffers=True``), updated after every optimizer step.

    Every rank keeps one. The parameters agree on all ranks (DDP keeps the weights equal); the BatchNorm running
    statistics are each rank's own, so :meth:`synchronise` gives every rank rank 0's before the average is
    evaluated, and a checkpoint holds rank 0's: an interrupted run resumes with exactly the average it had.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        """The averaged network, to evaluate or save like the raw one."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def synchronise(self) -> None:
        """Rank 0's averaged buffers on every rank (nothing to do outside a process group)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for buffer in self.averaged.module.buffers():
                dist.broadcast(buffer, src=0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)


_NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay_norm_bias: bool, backbone_lr_scale: float = 1.0
) -> list[dict]:
    """The optimizer's parameter groups: one with ``weight_decay`` for all parameters, or, with
    ``no_decay_norm_bias``, normalisation weights and every bias in a second group without weight decay. With a
    ``backbone_lr_scale`` other than 1, each splits into the classifier's parameters and the rest, whose ``lr_scale``
    the schedule multiplies their rate by.

    Written here because the maintained libraries keep it private (torchvision's ``ops._utils.
    split_normalization_params`` and the reference scripts' ``set_weight_decay``); the rule is theirs: by module
    type for normalisation layers, by name for biases.
    """
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if no_decay_norm_bias:
        decayed: list[nn.Parameter] = []
        exempt: list[nn.Parameter] = []
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                (exempt if isinstance(module, _NORMALISATION) or name == "bias" else decayed).append(parameter)
        groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    if backbone_lr_scale == 1.0:
        return groups  # the groups runs saved before fine-tuning options existed: their optimizer states load
    head = {id(parameter) for parameter in head_parameters(model)}
    split = []
    for group in groups:
        for scale, in_head in ((1.0, True), (backbone_lr_scale, False)):
            chosen = [parameter for parameter in group["params"] if (id(parameter) in head) == in_head]
            if chosen:
                split.append({**group, "params": chosen, "lr_scale": scale})
    return split


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classifier's weight and bias, under DDP's and ``torch.compile``'s wrappers too."""
    return [parameter for name, parameter in model.named_parameters() if name.split(".")[-2:-1] == ["classifier"]]


def backbone(model: nn.Module) -> tuple[tuple[nn.Parameter, ...], tuple[nn.Module, ...]]:
    """Every parameter but the classifier's, and every normalisation layer: what ``--freeze-epochs`` holds still."""
    head = {id(parameter) for parameter in head_parameters(model)}
    parameters = tuple(parameter for parameter in model.parameters() if id(parameter) not in head)
    return parameters, tuple(module for module in model.modules() if isinstance(module, _NORMALISATION))


def make_optimizer(groups: list[dict], name: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    """``sgd``: Nesterov SGD, the paper's; ``adamw``: ``torch.optim.AdamW`` (its default betas), each group keeping
    its own weight decay."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


@contextlib.contextmanager
def gradients_kept_local(model: nn.Module, local: bool) -> Iterator[None]:
    """DDP's ``no_sync`` while ``local`` (an accumulation step: the gradients are all-reduced once, with the last
    batch of the optimizer step); nothing for a model outside DDP."""
    no_sync = getattr(model, "no_sync", None)
    if local and no_sync is not None:
        with no_sync():
            yield
    else:
        yield
