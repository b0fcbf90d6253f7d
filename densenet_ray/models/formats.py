"""The export formats and their file suffixes, declared apart from the exporter so the command line's parser can
offer them without importing PyTorch."""

from __future__ import annotations

FORMATS = ("state_dict", "safetensors", "torchscript", "exported-program", "onnx")
SUFFIXES = {
    "state_dict": ".pth",
    "safetensors": ".safetensors",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "onnx": ".onnx",
}
# Formats whose files are programs: loading one runs code its maker wrote (TorchScript's, or an exported graph's
# operators and pickled constants), so ``predict`` and ``dr.load`` load one only when asked with this flag.
PROGRAMS = ("torchscript", "exported-program")
TRUST_PROGRAM = "--trust-program"
