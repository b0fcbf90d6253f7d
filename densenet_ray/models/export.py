"""A network as a file other tools load, in four formats, each written whole or not at all and checked by loading it
back with its own runtime:

- ``state_dict``: ``torch.save`` of the weights in torchvision's layout (``torchvision.models.densenet121()`` loads
  the ImageNet-form models' files with ``load_state_dict``);
- ``safetensors``: the same weights as a ``.safetensors`` file (the format timm and the Hugging Face Hub load),
  with the caller's string metadata in its header;
- ``torchscript``: ``torch.jit.trace`` (deprecated since PyTorch 2.5 in favour of ``torch.export``; kept for
  runtimes that still load TorchScript);
- ``exported-program``: ``torch.export.export`` and ``torch.export.save``, the batch dimension dynamic;
- ``onnx``: ``torch.onnx.export`` with the dynamo exporter (needs ``onnx`` and ``onnxscript``), the batch dimension
  dynamic, checked in ``onnxruntime``.

A ``state_dict`` is read back as plain weights (a file holding code is refused); a TorchScript or exported-program
file is a program, loaded only for a caller that trusts it (``trust_program``). Pure PyTorch; what describes the
model (its card) is the caller's.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import torch
from torch import nn

from densenet_ray.errors import UserError
from densenet_ray.models.formats import FORMATS, PROGRAMS, TRUST_PROGRAM
from densenet_ray.paths import atomic_path
from densenet_ray.safe_load import load_weights

WEIGHTS_ONLY = ("state_dict", "safetensors")  # loaded into a network the caller builds
ONNX_EXTRA = "pip install 'densenet-ray[onnx]'"
Runner = Callable[[torch.Tensor], torch.Tensor]


def _require_onnx(runtime: bool = False) -> None:
    names = ("onnxruntime",) if runtime else ("onnx", "onnxscript")
    for name in names:
        try:
            __import__(name)
        except ImportError:
            raise UserError(f"--format onnx needs {name}: {ONNX_EXTRA}") from None


def export_model(
    network: nn.Module, example: torch.Tensor, path: str, file_format: str, metadata: dict[str, str] | None = None
) -> None:
    """Write ``network`` (in evaluation mode) to ``path`` in ``file_format``, tracing it on ``example``;
    ``metadata`` goes into a safetensors file's header."""
    if file_format not in FORMATS:
        raise UserError(f"--format {file_format!r} is not one of: {', '.join(FORMATS)}")
    network.eval()
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(path) as partial, torch.no_grad():
        if file_format == "state_dict":
            torch.save(network.state_dict(), partial)
        elif file_format == "safetensors":
            from safetensors.torch import save_file

            save_file({key: value.contiguous() for key, value in network.state_dict().items()}, partial, metadata)
        elif file_format == "torchscript":
            with warnings.catch_warnings():  # its deprecation is said in the module docstring and the README
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.trace(network, example).save(partial)
        elif file_format == "exported-program":
            program = torch.export.export(network, (example,), dynamic_shapes=({0: batch},))
            with open(partial, "wb") as handle:  # a handle: torch.export.save insists on a .pt2 name otherwise
                torch.export.save(program, handle)
        else:
            _require_onnx()
            # One self-contained file (DenseNets are far below protobuf's 2 GB), and the exporter's progress lines
            # kept off our output.
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    network, (example,), partial, dynamo=True, dynamic_shapes=({0: batch},), external_data=False
                )


def load_export(path: str, file_format: str, network: nn.Module | None = None, trust_program: bool = False) -> Runner:
    """``run(batch) -> logits`` over an exported file, with the format's own runtime (a ``state_dict`` loads into
    ``network``, strictly). A TorchScript or exported-program file is a program: refused unless ``trust_program``."""
    if file_format in PROGRAMS and not trust_program:
        raise UserError(
            f"{path} is a {file_format} file, a program that runs its maker's code when loaded; if you trust whoever "
            f"made it, add {TRUST_PROGRAM} (trust_program=True in Python)"
        )
    if file_format in WEIGHTS_ONLY:
        if network is None:
            raise ValueError(f"a {file_format} file needs the network to load into")
        network.load_state_dict(read_weights(path, file_format), strict=True)
        return network.eval()
    if file_format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(path, map_location="cpu").eval()
    if file_format == "exported-program":
        with open(path, "rb") as handle:
            return torch.export.load(handle).module()
    _require_onnx(runtime=True)
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: torch.from_numpy(session.run(None, {name: batch.numpy()})[0])


def read_weights(path: str, file_format: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``state_dict`` or ``safetensors`` export."""
    if file_format == "safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return load_weights(path, path)


def check_export(network: nn.Module, example: torch.Tensor, path: str, file_format: str) -> float:
    """The largest absolute difference between ``network``'s logits on ``example`` and the exported file's, run by
    its own runtime on a batch one larger than the traced one (the batch dimension must be dynamic)."""
    import copy

    batch = torch.cat([example, example[:1]])
    with torch.no_grad():
        expected = network.eval()(batch)
        blank = None
        if file_format in WEIGHTS_ONLY:  # every tensor zeroed: only the file's weights can give the logits back
            blank = copy.deepcopy(network)
            for tensor in blank.state_dict().values():
                tensor.zero_()
        run = load_export(path, file_format, blank, trust_program=True)  # the file this process just wrote
        return float((run(batch) - expected).abs().max())
