"""Suite-wide fixtures: RNG isolation between tests and automatic skipping of GPU tests without CUDA."""

from __future__ import annotations

import random

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_rng_state():
    """Save the torch, CUDA and Python RNG states before each test and restore them after it."""
    python_state = random.getstate()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        import numpy

        numpy_state = numpy.random.get_state()
    except ImportError:  # numpy is optional for the suite
        numpy = None
        numpy_state = None
    yield
    random.setstate(python_state)
    torch.random.set_rng_state(torch_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)
    if numpy is not None:
        numpy.random.set_state(numpy_state)
