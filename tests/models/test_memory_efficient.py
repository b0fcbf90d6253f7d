"""The memory-efficient mode: identical outputs, gradients and BatchNorm statistics, and DDP compatibility."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from densenet_ray.models import create_model

CASES = [
    ("densenet_bc100_k12", {"depth": 40}, 32),  # bottleneck: 1x1 conv is the recomputed one
    ("densenet40_k12", {"depth": 16}, 32),  # basic: the 3x3 conv follows the concatenation
    ("densenet121", {}, 64),  # ImageNet form, 4 blocks
    ("densenet_bc100_k12", {"depth": 40, "drop_rate": 0.2}, 32),  # dropout after the recomputed conv
]


def _pair(name: str, overrides: dict, dtype: torch.dtype = torch.float64):
    torch.manual_seed(0)
    standard = create_model(name, **overrides).to(dtype).train()
    efficient = copy.deepcopy(standard)
    efficient.set_grad_checkpointing(True)
    return standard, efficient


def _step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)  # the same dropout masks for both modes
    logits = model(images)
    F.cross_entropy(logits, labels).backward()
    return logits.detach()


@pytest.mark.parametrize(("name", "overrides", "size"), CASES)
def test_same_outputs_gradients_and_running_stats(name: str, overrides: dict, size: int) -> None:
    standard, efficient = _pair(name, overrides)
    images = torch.randn(4, 3, size, size, dtype=torch.float64)
    labels = torch.randint(0, standard.config.classes, (4,))
    torch.testing.assert_close(_step(efficient, images, labels), _step(standard, images, labels), rtol=0, atol=1e-12)
    efficient_params = dict(efficient.named_parameters())
    for key, param in standard.named_parameters():
        torch.testing.assert_close(efficient_params[key].grad, param.grad, rtol=1e-10, atol=1e-12, msg=key)
    efficient_buffers = dict(efficient.named_buffers())
    for key, buffer in standard.named_buffers():
        torch.testing.assert_close(efficient_buffers[key], buffer, rtol=0, atol=1e-12, msg=key)


def test_batchnorm_statistics_move_once_per_step() -> None:
    # Checkpoint-based implementations (torchvision, gpleiss) run norm1 twice and count 2 batches per step.
    _, efficient = _pair("densenet_bc100_k12", {"depth": 40})
    images, labels = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    _step(efficient, images, labels)
    tracked = {k: int(v) for k, v in efficient.named_buffers() if k.endswith("num_batches_tracked")}
    assert set(tracked.values()) == {1}, tracked


def test_efficient_mode_saves_no_concatenation() -> None:
    # What autograd keeps per dense layer must not grow with the layer's input width.
    standard, efficient = _pair("densenet_bc100_k12", {"depth": 100}, torch.float32)
    images = torch.randn(2, 3, 32, 32)

    def saved_bytes(model: torch.nn.Module) -> int:
        seen: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(images).sum()
        return sum(seen.values())

    assert saved_bytes(efficient) < 0.5 * saved_bytes(standard)


def test_no_recompute_without_grad() -> None:
    _, efficient = _pair("densenet_bc100_k12", {"depth": 40})
    with torch.no_grad():
        out = efficient(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert out.grad_fn is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        grads = {}
        for efficient in (False, True):
            torch.manual_seed(0)
            model = create_model("densenet_bc100_k12", depth=40, memory_efficient=efficient)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            generator = torch.Generator().manual_seed(100 + rank)  # each rank its own half of the batch
            images = torch.randn(4, 3, 32, 32, generator=generator)
            labels = torch.randint(0, 10, (4,), generator=generator)
            F.cross_entropy(ddp(images), labels).backward()
            grads[efficient] = {k: p.grad.clone() for k, p in model.named_parameters()}
            tracked = {int(v) for k, v in model.named_buffers() if k.endswith("num_batches_tracked")}
            assert tracked == {1}, tracked
        gathered = [None] * world
        dist.all_gather_object(gathered, grads[True])
        results[rank] = {
            "max_diff_vs_standard": max((grads[True][k] - grads[False][k]).abs().max().item() for k in grads[True]),
            "max_diff_across_ranks": max(
                (gathered[0][k] - gathered[1][k]).abs().max().item()
                for k in grads[True]  # type: ignore[index]
            ),
            "params_with_grad": sum(1 for g in grads[True].values() if g is not None),
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
def test_two_process_gloo_ddp_step_in_memory_efficient_mode() -> None:
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, _free_port(), results), nprocs=2, join=True)
        results = dict(results)
    n_params = len(list(create_model("densenet_bc100_k12", depth=40).parameters()))
    for rank in (0, 1):
        assert results[rank]["params_with_grad"] == n_params
        assert results[rank]["max_diff_vs_standard"] < 1e-5
        assert results[rank]["max_diff_across_ranks"] == 0.0


def test_shared_scratch_is_released_after_forward_and_backward() -> None:
    _, efficient = _pair("densenet_bc100_k12", {"depth": 40})
    images, labels = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    logits = efficient(images)
    assert not efficient.scratch._buffers  # freed when each block's forward ends
    F.cross_entropy(logits, labels).backward()
    assert not efficient.scratch._buffers  # freed after each block's first layer runs backward


def test_copies_share_no_scratch_and_pickle() -> None:
    import pickle

    _, efficient = _pair("densenet_bc100_k12", {"depth": 40})
    copied = copy.deepcopy(efficient)
    assert copied.scratch is not efficient.scratch
    layers = [m for n, m in copied.named_modules() if n.endswith("denselayer1")]
    assert all(layer.scratch is copied.scratch for layer in layers)
    restored = pickle.loads(pickle.dumps(efficient))
    images, labels = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (2,))
    F.cross_entropy(restored(images), labels).backward()
    assert all(p.grad is not None for p in restored.parameters())


def test_channels_last_matches_standard() -> None:
    standard, efficient = _pair("densenet_bc100_k12", {"depth": 40}, torch.float32)
    standard = standard.to(memory_format=torch.channels_last)
    efficient = efficient.to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (4,))
    torch.testing.assert_close(_step(efficient, images, labels), _step(standard, images, labels))
    efficient_params = dict(efficient.named_parameters())
    for key, param in standard.named_parameters():
        torch.testing.assert_close(efficient_params[key].grad, param.grad, rtol=1e-4, atol=1e-6, msg=key)


def test_sync_batchnorm_layers_fall_back_to_the_standard_path() -> None:
    # SyncBatchNorm reduces statistics across processes in its own backward; the efficient function would not.
    _, efficient = _pair("densenet_bc100_k12", {"depth": 40}, torch.float32)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(efficient)
    layer = converted.features.denseblock1.denselayer2
    assert isinstance(layer.norm1, torch.nn.SyncBatchNorm) and layer.memory_efficient
    features = [torch.randn(2, 24, 8, 8, requires_grad=True), torch.randn(2, 12, 8, 8, requires_grad=True)]
    out = layer._first_conv(features)
    assert "ConcatNormReluConv" not in type(out.grad_fn).__name__


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_on_cuda_matches_standard(dtype: torch.dtype) -> None:
    standard, efficient = _pair("densenet_bc100_k12", {"depth": 40}, torch.float32)
    standard, efficient = standard.cuda(), efficient.cuda()
    images, labels = torch.randn(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        reference = _step(standard, images, labels)
        result = _step(efficient, images, labels)
    torch.testing.assert_close(result.float(), reference.float(), rtol=2e-2, atol=2e-2)
    efficient_params = dict(efficient.named_parameters())
    for key, param in standard.named_parameters():
        torch.testing.assert_close(efficient_params[key].grad, param.grad, rtol=5e-2, atol=5e-3, msg=key)


@pytest.mark.slow
def test_memory_efficient_mode_compiles_into_one_graph_with_the_same_gradients() -> None:
    """Under torch.compile the memory-efficient layers trace without a graph break, give the standard mode's eager
    gradients and move the BatchNorm running statistics once per step."""
    standard, efficient = _pair("densenet_bc100_k12", {"depth": 16}, torch.float32)
    images = torch.randn(4, 3, 32, 32)
    labels = torch.randint(0, 10, (4,))
    explanation = torch._dynamo.explain(copy.deepcopy(efficient))(images)  # explain runs the model
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
    torch._dynamo.reset()
    # The compiled memory-efficient step against the eager standard one, the reference every mode must match.
    F.cross_entropy(standard(images), labels).backward()
    F.cross_entropy(torch.compile(efficient)(images), labels).backward()
    efficient_params = dict(efficient.named_parameters())
    for key, param in standard.named_parameters():
        torch.testing.assert_close(efficient_params[key].grad, param.grad, rtol=1e-4, atol=1e-5, msg=key)
    efficient_buffers = dict(efficient.named_buffers())
    for key, buffer in standard.named_buffers():
        torch.testing.assert_close(efficient_buffers[key], buffer, rtol=1e-5, atol=1e-6, msg=key)
    assert int(efficient.features.denseblock1.denselayer1.norm1.num_batches_tracked) == 1
