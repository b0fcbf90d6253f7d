"""What the package loads from files others may have written: weights files only as plain weights, and pickles of
code (compile artifacts, a sweep's saved state) only from storage the user trusts.

The one way the package reads a PyTorch weights file is ``torch.load(weights_only=True)``.

A ``.pth``/``.pt`` file is a pickle, and an ordinary pickle runs whatever calls it names (``os.system`` included) as
it loads. PyTorch's weights-only unpickler builds tensors, numbers, strings and plain containers only, and refuses
anything else before calling it. Every file the package writes (``state.pt`` with its optimizer, scaler, moving
average, position and configuration; ``rng-rank<r>.pt``; ``export --format state_dict``) and the state_dicts of
torchvision and timm hold nothing more, so no extra type is allowlisted (``torch.serialization.safe_globals``);
``tests/train/test_untrusted_files.py`` saves a checkpoint with every optional part and restores it through here.
"""

from __future__ import annotations

import pickle
import re
import warnings
from typing import IO, Any

import torch

from densenet_ray.errors import UserError

# TrainConfig.trust_storage's flag, for the lines that name it.
TRUST_STORAGE = "--trust-storage"


class NotPlainWeights(UserError):
    """A file that is not only tensors and plain containers: loading it would run code (or it is a TorchScript
    program). ``reason`` says what it holds; the message names the file."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label} is not a plain weights file: {reason}; refused")
        self.label, self.reason = label, reason


def refusal(error: BaseException) -> str | None:
    """What code made the weights-only unpickler refuse a file (None when ``error`` is another failure: a truncated
    zip, bytes that are no pickle torch.save writes)."""
    text = str(error)
    if "TorchScript" in text and "weights_only" in text:
        return "it is a TorchScript program, which runs code of its own"
    called = re.search(r"GLOBAL ([\w.]+)", text) if isinstance(error, pickle.UnpicklingError) else None
    return f"loading it would call {called.group(1)} (code, not tensors)" if called else None


def failure(error: BaseException) -> str:
    """One line for a file that did not load: its error's type and PyTorch's own cause, without the advice about
    ``weights_only`` that PyTorch puts first."""
    text = str(error)
    cause = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    first = cause.group(1).strip() if cause else (text.splitlines()[0] if text else "")
    return f"{type(error).__name__}: {first[:120]}".rstrip(": ")


def load_weights(source: str | IO[bytes], label: str, map_location: Any = "cpu") -> Any:
    """``torch.load(source, weights_only=True)``; :class:`NotPlainWeights` (one line naming ``label``) for a file
    that holds code. Other failures (not a zip, truncated) propagate as PyTorch raises them."""
    try:
        with warnings.catch_warnings():  # the refusal below says it in one line; PyTorch's warnings would add more
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(source, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        reason = refusal(error)
        if reason is None:
            raise
        raise NotPlainWeights(label, reason) from None


def storage_trusted(url: str, trust_storage: bool) -> bool:
    """Whether pickles in the storage at ``url`` may be loaded: local storage is the user's own; remote storage only
    when they say that nobody else can write it (``--trust-storage``)."""
    return trust_storage or "://" not in url or url.startswith("file://")
