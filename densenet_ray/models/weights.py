"""Starting weights: our run checkpoints, torchvision-format state_dicts (legacy keys included), local or on S3,
and torchvision's own ImageNet weights (``--pretrained``)."""

from __future__ import annotations

import io
import os
from typing import Any

import torch
from torch import nn

from densenet_ray.errors import UserError
from densenet_ray.safe_load import NotPlainWeights, load_weights, refusal

CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")
STATE_FILE = "state.pt"
WEIGHT_FILES = "(a checkpoint directory, state.pt, a .pth or a .safetensors file)"
# torchvision publishes ImageNet weights for these four (torchvision.models.DenseNet121_Weights and siblings).
PRETRAINED = {
    "densenet121": "DenseNet121_Weights",
    "densenet161": "DenseNet161_Weights",
    "densenet169": "DenseNet169_Weights",
    "densenet201": "DenseNet201_Weights",
}


def _read_checkpoint_bytes(path: str, flag: str) -> bytes:
    """The bytes of a checkpoint given as a URL (``s3://`` or ``file://``): a run checkpoint directory or a file."""
    from densenet_ray.data.storage import StorageError, open_storage, split_url

    try:
        directory = open_storage(path)
        if directory.exists(STATE_FILE):
            return directory.read_bytes(STATE_FILE)
        parent, name = split_url(path)
        folder = open_storage(parent)
        if name and folder.exists(name):
            return folder.read_bytes(name)
    except StorageError as error:
        raise UserError(f"{flag} {path}: {error}") from None
    raise UserError(f"{flag} {path} does not exist {WEIGHT_FILES}")


def load_checkpoint(path: str, flag: str = "--init-from") -> Any:
    """What ``torch.load(weights_only=True)`` gives for ``path``: a run checkpoint directory (its ``state.pt``), a
    file, or the URL of either. ``flag`` names the option in error messages; a file holding code is refused."""
    source: Any
    if path.endswith(".safetensors"):
        return _read_safetensors(path, flag)
    if "://" in path and not path.startswith("file://"):
        source = io.BytesIO(_read_checkpoint_bytes(path, flag))
    else:
        path = path.removeprefix("file://")
        source = os.path.join(path, STATE_FILE) if os.path.isdir(path) else path
        if not os.path.isfile(source):
            raise UserError(f"{flag} {path} does not exist {WEIGHT_FILES}")
    try:
        return load_weights(source, f"{flag} {path}")
    except UserError:
        raise
    except Exception as error:  # pickle and zip errors come in many types
        raise UserError(f"{flag} {path} is not a PyTorch checkpoint ({type(error).__name__})") from None


def _read_safetensors(path: str, flag: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, local or at a URL."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if "://" in path and not path.startswith("file://"):
        data = _read_checkpoint_bytes(path, flag)
    else:
        path = path.removeprefix("file://")
        if not os.path.isfile(path):
            raise UserError(f"{flag} {path} does not exist {WEIGHT_FILES}")
        with open(path, "rb") as handle:
            data = handle.read()
    try:
        return load(data)
    except (SafetensorError, ValueError) as error:
        raise UserError(f"{flag} {path} is not a safetensors file ({str(error)[:120]})") from None


def state_dict_of(loaded: Any, path: str, flag: str = "--init-from", average: bool = False) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: our training state's ``model`` (or, ``average``, its ``--ema``
    moving average), a ``state_dict`` entry, or the object itself; DDP's ``module.`` prefixes removed."""
    if average:
        ema = loaded.get("ema") if isinstance(loaded, dict) else None
        if not isinstance(ema, dict):
            raise UserError(f"{flag} {path} has no moving average of its weights (its run trained without --ema)")
        return {key.removeprefix("module."): value for key, value in ema.items() if key != "n_averaged"}
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]  # our training state
    elif isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{flag} {path} holds no state_dict")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def read_state_dict(path: str, flag: str = "--init-from") -> dict[str, torch.Tensor]:
    """The model weights in ``path`` (see :func:`load_checkpoint`)."""
    return state_dict_of(load_checkpoint(path, flag), path, flag)


def pretrained_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``model_name``, through its weights API (cached under ``TORCH_HOME``)."""
    import torchvision.models

    if model_name not in PRETRAINED:
        raise UserError(
            f"--pretrained: torchvision has ImageNet weights for {', '.join(PRETRAINED)} only, not {model_name!r}"
        )
    weights = getattr(torchvision.models, PRETRAINED[model_name]).DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:  # the hash is checked on download only: a file already in the cache is loaded as plain weights too
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as error:  # URLError, HTTPError, hash mismatch, a truncated file: all mean "no weights here"
        held = refusal(error)
        if held is not None:
            raise NotPlainWeights(f"--pretrained {os.path.join(cache, os.path.basename(weights.url))}", held) from None
        reason = str(getattr(error, "reason", "") or error).splitlines()[0][:160] or type(error).__name__
        raise UserError(
            f"--pretrained: cannot get {weights.url} ({reason}); with no internet, copy that file into {cache} "
            f"or pass it with --init-from"
        ) from None


def load_initial_weights(
    model: nn.Module, source: str | dict[str, torch.Tensor], flag: str = "--init-from", reset_head: bool = False
) -> list[str]:
    """Load ``source`` (a path or URL, or a state_dict) into ``model`` strictly, except a classifier of another class
    count (or any classifier, ``reset_head``), which is left freshly initialised. Returns the keys left as
    initialised (empty, or the classifier's)."""
    label = source if isinstance(source, str) else "weights"
    state = dict(read_state_dict(source, flag) if isinstance(source, str) else source)
    own = model.state_dict()
    kept_fresh = [
        key
        for key in CLASSIFIER_KEYS
        if key in state and key in own and (reset_head or state[key].shape != own[key].shape)
    ]
    for key in kept_fresh:
        del state[key]
    try:
        result = model.load_state_dict(state, strict=not kept_fresh)
    except RuntimeError as error:  # shape mismatches: name the first one, not all of them
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise UserError(f"{flag} {label} does not fit the model ({first[:200]})") from None
    unexpected = list(result.unexpected_keys) if result else []
    missing = [key for key in (result.missing_keys if result else []) if key not in kept_fresh]
    if missing or unexpected:
        raise UserError(f"{flag} {label} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return kept_fresh
