"""Memory-efficient "concatenate, BatchNorm, ReLU, convolve" for DenseNet layers.

Every dense layer starts by concatenating all earlier feature maps of its block, normalising them and applying a
convolution. Kept for backward, the concatenation and the BN/ReLU output are two tensors of ``l * k`` channels
per layer, so activation memory grows quadratically with depth (Pleiss et al., arXiv:1707.06990, sections 2-3).

:class:`_ConcatNormReluConv` stores none of them. Forward keeps only references to the input feature maps (which
the block holds anyway) and the convolution output; backward recomputes concatenation, BN and ReLU from those
references, then runs the convolution's backward directly. Compared with ``torch.utils.checkpoint`` around the
same four operations (torchvision, gpleiss) this:

* does not recompute the convolution forward, which for a bottleneck layer is about half of the layer's forward
  multiply-adds, so the time overhead is only the cheap, memory-bound concat + BN + ReLU;
* updates BatchNorm running statistics exactly once per step: the statistics are updated by the module call in
  forward, and the recomputation in backward uses the batch statistics without touching the running buffers
  (the double-update pitfall of checkpointing, pytorch/pytorch#96136);
* is an ordinary autograd node, so DDP's gradient hooks fire once per parameter (no reentrant backward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SharedScratch:
    """Scratch storage reused by every memory-efficient dense layer of one model.

    The technical report's "shared memory allocations": the concatenation and the BN-ReLU output of a layer live
    only while that layer runs (forward, or its recomputation in backward), so two buffers sized for the widest
    layer of a block serve all its layers. A block reserves them when it starts and frees them when it is done,
    in forward and in backward, so they never add to the step's peak. Besides bounding memory, this avoids a fresh
    multi-megabyte allocation per layer and pass, which on CPU means page faults for every tensor above glibc's
    mmap threshold. Buffers are keyed by device and dtype, are not part of the state_dict, and are never copied
    (``deepcopy`` and pickling give an empty scratch).
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    def reserve(self, like: torch.Tensor, channels: int) -> None:
        """Make both buffers hold ``(N, channels, H, W)``: a block reserves its widest layer's size up front."""
        for slot in (0, 1):
            self._ensure(slot, like, channels)

    def _ensure(self, slot: int, like: torch.Tensor, channels: int) -> torch.Tensor:
        batch, _, height, width = like.shape
        numel = batch * channels * height * width
        key = (like.device, like.dtype, slot)
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < numel:
            self._buffers.pop(key, None)
            del flat  # release the old storage before allocating the larger one
            flat = torch.empty(numel, device=like.device, dtype=like.dtype)
            self._buffers[key] = flat
        return flat[:numel]

    def take(self, slot: int, like: torch.Tensor, channels: int) -> torch.Tensor:
        """An uninitialised ``(N, channels, H, W)`` view of buffer ``slot``, in ``like``'s memory format."""
        batch, _, height, width = like.shape
        flat = self._ensure(slot, like, channels)
        if not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
            return flat.view(batch, height, width, channels).permute(0, 3, 1, 2)
        return flat.view(batch, channels, height, width)

    def clear(self) -> None:
        """Free every buffer (they are reallocated on the next training step)."""
        self._buffers.clear()

    def __deepcopy__(self, memo: dict) -> SharedScratch:
        return SharedScratch()

    def __getstate__(self) -> dict:
        return {"buffers": "not pickled"}  # a non-empty state, so unpickling calls __setstate__

    def __setstate__(self, state: dict) -> None:
        self._buffers = {}


def _batch_norm_into(norm: nn.BatchNorm2d, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``out = norm(x)`` with exactly ``nn.BatchNorm2d.forward``'s running-statistics bookkeeping.

    Returns the batch mean and inverse standard deviation (empty when running statistics were used).
    """
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    use_batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
    keep_running = not norm.training or norm.track_running_stats
    stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype  # BN accumulates in fp32
    _, save_mean, save_invstd = torch.native_batch_norm(
        x,
        norm.weight,
        norm.bias,
        norm.running_mean if keep_running else None,
        norm.running_var if keep_running else None,
        use_batch_stats,
        momentum,
        norm.eps,
        out=(out, x.new_empty(0, dtype=stats_dtype), x.new_empty(0, dtype=stats_dtype)),
    )
    return save_mean, save_invstd


class _ConcatNormReluConv(torch.autograd.Function):
    """``conv(relu(norm(cat(features))))`` without saving the concatenation or the normalised activations."""

    @staticmethod
    def forward(
        ctx: Any,
        norm: nn.BatchNorm2d,
        conv: nn.Conv2d,
        scratch: SharedScratch,
        release_after_backward: bool,
        *tensors: torch.Tensor,
    ) -> torch.Tensor:
        # tensors = (*features, norm.weight, norm.bias, conv.weight); parameters are inputs so they get gradients.
        features = tensors[:-3]
        channels = sum(f.shape[1] for f in features)
        concatenated = torch.cat(features, 1, out=scratch.take(0, features[0], channels))
        normalized = scratch.take(1, features[0], channels)
        # Running statistics move here, once per step, exactly as in the standard path.
        ctx.batch_stats = _batch_norm_into(norm, concatenated, normalized)
        output = conv(normalized.relu_())
        ctx.norm, ctx.conv, ctx.scratch, ctx.release = norm, conv, scratch, release_after_backward
        ctx.used_batch_stats = norm.training or norm.running_mean is None
        ctx.output_dtype = output.dtype
        ctx.save_for_backward(*tensors)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        *features, weight, bias, conv_weight = ctx.saved_tensors
        norm, conv, training, scratch = ctx.norm, ctx.conv, ctx.used_batch_stats, ctx.scratch
        feature_needs = ctx.needs_input_grad[4:-3]
        needs_features, (needs_weight, needs_bias, needs_conv) = any(feature_needs), ctx.needs_input_grad[-3:]
        running_mean = None if training else norm.running_mean
        running_var = None if training else norm.running_var
        channels = sum(f.shape[1] for f in features)
        concatenated = torch.cat(features, 1, out=scratch.take(0, features[0], channels))
        activated = scratch.take(1, features[0], channels)
        save_mean, save_invstd = ctx.batch_stats
        if training:
            # Forward's batch statistics turn the recomputed BN into one fused multiply-add per element; nothing
            # touches the running buffers, so they move once per step.
            scale = weight * save_invstd
            shift = bias - save_mean * scale
            torch.addcmul(shift.view(1, -1, 1, 1), concatenated, scale.view(1, -1, 1, 1), out=activated)
        else:
            torch.native_batch_norm(
                concatenated,
                weight,
                bias,
                running_mean,
                running_var,
                False,
                0.0,
                norm.eps,
                out=(activated, save_mean, save_invstd),
            )
        activated.relu_()
        grad_activated, grad_conv_weight, _ = torch.ops.aten.convolution_backward(
            grad_output.to(ctx.output_dtype),
            activated.to(ctx.output_dtype),
            conv_weight.to(ctx.output_dtype),
            None,
            conv.stride,
            conv.padding,
            conv.dilation,
            False,
            [0, 0],
            conv.groups,
            [needs_features or needs_weight or needs_bias, needs_conv, False],
        )
        if grad_conv_weight is not None:
            grad_conv_weight = grad_conv_weight.to(conv_weight.dtype)
        feature_grads: list[torch.Tensor | None] = [None] * len(features)
        grad_weight = grad_bias = None
        if grad_activated is not None:
            grad_activated = grad_activated.to(activated.dtype)
            # ReLU backward, in place: the gradient is zero wherever the activation was clamped.
            torch.ops.aten.threshold_backward.grad_input(grad_activated, activated, 0, grad_input=grad_activated)
            grad_input, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
                grad_activated,
                concatenated,
                weight,
                running_mean,
                running_var,
                save_mean,
                save_invstd,
                training,
                norm.eps,
                [needs_features, needs_weight, needs_bias],
            )
            if grad_input is not None:
                sizes = [f.shape[1] for f in features]
                feature_grads = [
                    g if need else None for g, need in zip(grad_input.split(sizes, 1), feature_needs, strict=True)
                ]
        del activated, concatenated
        if ctx.release:  # the block's first layer runs backward last
            scratch.clear()
        return (None, None, None, None, *feature_grads, grad_weight, grad_bias, grad_conv_weight)


def concat_norm_relu_conv(
    features: list[torch.Tensor],
    norm: nn.BatchNorm2d,
    conv: nn.Conv2d,
    scratch: SharedScratch,
    release_after_backward: bool = False,
) -> torch.Tensor:
    """Memory-efficient ``conv(relu(norm(torch.cat(features, 1))))``; same values and gradients as the plain form.

    ``norm`` must be a plain ``nn.BatchNorm2d`` with affine parameters and ``conv`` a convolution without bias (the
    DenseNet layout); ``scratch`` is the model's shared buffer pair, freed after this layer's backward when
    ``release_after_backward`` (set for the first layer of a block, whose backward comes last).
    """
    return _ConcatNormReluConv.apply(
        norm, conv, scratch, release_after_backward, *features, norm.weight, norm.bias, conv.weight
    )
