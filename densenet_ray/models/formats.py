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
