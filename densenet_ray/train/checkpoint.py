"""Loading starting weights: our run checkpoints or torchvision-format state_dicts (legacy keys included)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The model weights in ``path``: a run checkpoint directory or ``state.pt``, or a plain (torchvision) file."""
    if os.path.isdir(path):
        path = os.path.join(path, "state.pt")
    if not os.path.isfile(path):
        raise ValueError(f"--init-from {path} does not exist (a checkpoint directory, state.pt or a .pth file)")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle and zip errors come in many types
        raise ValueError(f"--init-from {path} is not a PyTorch checkpoint ({type(error).__name__})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]  # our training state
    elif isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"--init-from {path} holds no state_dict")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def load_initial_weights(model: nn.Module, path: str) -> list[str]:
    """Load ``path`` into ``model`` strictly, except a classifier of another class count, which is left freshly
    initialised. Returns the keys left as initialised (empty, or the classifier's)."""
    state = read_state_dict(path)
    own = model.state_dict()
    kept_fresh = [key for key in CLASSIFIER_KEYS if key in state and key in own and state[key].shape != own[key].shape]
    for key in kept_fresh:
        del state[key]
    try:
        result = model.load_state_dict(state, strict=not kept_fresh)
    except RuntimeError as error:  # shape mismatches: name the first one, not all of them
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ValueError(f"--init-from {path} does not fit the model ({first[:200]})") from None
    unexpected = list(result.unexpected_keys) if result else []
    missing = [key for key in (result.missing_keys if result else []) if key not in kept_fresh]
    if missing or unexpected:
        raise ValueError(
            f"--init-from {path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return kept_fresh
