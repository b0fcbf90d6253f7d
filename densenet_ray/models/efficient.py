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
import torch.nn.functional as F
from torch import nn


class _ConcatNormReluConv(torch.autograd.Function):
    """``conv(relu(norm(cat(features))))`` without saving the concatenation or the normalised activations."""

    @staticmethod
    def forward(ctx: Any, norm: nn.BatchNorm2d, conv: nn.Conv2d, *tensors: torch.Tensor) -> torch.Tensor:
        # tensors = (*features, norm.weight, norm.bias, conv.weight); parameters are inputs so they get gradients.
        features = tensors[:-3]
        # The module call updates running_mean/var and num_batches_tracked exactly as the standard path does.
        normalized = F.relu(norm(torch.cat(features, 1)), inplace=True)
        output = conv(normalized)
        ctx.norm, ctx.conv = norm, conv
        ctx.used_batch_stats = norm.training or norm.running_mean is None
        ctx.output_dtype = output.dtype
        ctx.save_for_backward(*tensors)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        *features, weight, bias, conv_weight = ctx.saved_tensors
        norm, conv, training = ctx.norm, ctx.conv, ctx.used_batch_stats
        needs_features, needs_weight, needs_bias, needs_conv = (
            any(ctx.needs_input_grad[2:-3]),
            *ctx.needs_input_grad[-3:],
        )
        running_mean = None if training else norm.running_mean
        running_var = None if training else norm.running_var
        concatenated = torch.cat(features, 1)
        # Batch statistics reproduce forward's normalisation; no running buffers are passed, so none move.
        activated, save_mean, save_invstd = torch.native_batch_norm(
            concatenated, weight, bias, running_mean, running_var, training, 0.0, norm.eps
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
            # ReLU backward in place, then drop the activations before BN backward allocates its output.
            grad_activated = grad_activated.to(activated.dtype)
            torch.ops.aten.threshold_backward.grad_input(grad_activated, activated, 0, grad_input=grad_activated)
            del activated
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
                    g if need else None
                    for g, need in zip(grad_input.split(sizes, 1), ctx.needs_input_grad[2:-3], strict=True)
                ]
        return (None, None, *feature_grads, grad_weight, grad_bias, grad_conv_weight)


def concat_norm_relu_conv(features: list[torch.Tensor], norm: nn.BatchNorm2d, conv: nn.Conv2d) -> torch.Tensor:
    """Memory-efficient ``conv(relu(norm(torch.cat(features, 1))))``; same values and gradients as the plain form.

    ``norm`` must have affine parameters and ``conv`` no bias (the DenseNet layout).
    """
    return _ConcatNormReluConv.apply(norm, conv, *features, norm.weight, norm.bias, conv.weight)
