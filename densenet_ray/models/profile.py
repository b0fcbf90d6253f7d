"""Parameter and multiply-add counts, computed on the meta device so even 73M-parameter models cost nothing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from densenet_ray.models.config import DenseNetConfig
from densenet_ray.models.densenet import DenseNet


@dataclass(frozen=True)
class StageProfile:
    """One top-level stage of ``features`` (or the classifier head)."""

    name: str
    layers: int
    in_channels: int
    out_channels: int
    resolution: int
    params: int
    macs: int


@dataclass(frozen=True)
class ModelProfile:
    """Totals and per-stage figures for one configuration at its native resolution, one image."""

    params: int
    macs: int
    resolution: int
    stages: tuple[StageProfile, ...]


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters())


def _conv_linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    # Multiply-adds of convolutions and linear layers only, as torchvision's "GFLOPS" metadata counts them.
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return output.numel() * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def profile_model(config: DenseNetConfig | str, resolution: int | None = None, **overrides: object) -> ModelProfile:
    """Count parameters and conv+linear multiply-adds for one ``resolution`` x ``resolution`` image; ``config`` is a
    :class:`DenseNetConfig` or a registered model name (with ``overrides`` of its fields, as ``create_model``)."""
    if isinstance(config, str):
        from densenet_ray.models.registry import resolve_config

        config = resolve_config(config, **overrides)
    size = resolution or config.resolution
    with torch.device("meta"):
        model = DenseNet(config).eval()
    stage_macs: dict[str, int] = {}
    hooks = []
    for stage_name, stage in [*model.features.named_children(), ("classifier", model.classifier)]:
        stage_macs[stage_name] = 0
        for module in stage.modules():
            hooks.append(module.register_forward_hook(_make_hook(stage_macs, stage_name)))
    stages = []
    with torch.no_grad():
        x = torch.empty(1, 3, size, size, device="meta")
        for stage_name, stage in model.features.named_children():
            out = stage(x)
            layers = len(stage) if isinstance(stage, nn.ModuleDict) and stage_name.startswith("denseblock") else 1
            stages.append(
                StageProfile(
                    name=stage_name,
                    layers=layers,
                    in_channels=x.shape[1],
                    out_channels=out.shape[1],
                    resolution=out.shape[-1],
                    params=count_params(stage),
                    macs=0,
                )
            )
            x = out
        model.forward_head(torch.relu(x))
    for hook in hooks:
        hook.remove()
    stages.append(
        StageProfile(
            name="classifier",
            layers=1,
            in_channels=model.num_features,
            out_channels=config.classes,
            resolution=1,
            params=count_params(model.classifier),
            macs=0,
        )
    )
    stages = [StageProfile(**{**s.__dict__, "macs": stage_macs[s.name]}) for s in stages]
    return ModelProfile(count_params(model), sum(stage_macs.values()), size, tuple(stages))


def _make_hook(totals: dict[str, int], stage: str):  # noqa: ANN202 - forward-hook signature
    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        totals[stage] += _conv_linear_macs(module, output)

    return hook
