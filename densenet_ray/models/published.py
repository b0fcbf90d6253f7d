"""What was published for each registered model: its parameter count as printed and its errors, with the source, so
the documentation's model table can set our exact counts beside them.

Sources: the paper (Huang et al., CVPR 2017, arXiv:1608.06993: Table 2 for CIFAR and SVHN, Table 3 for ImageNet),
the original code's README (github.com/liuzhuang13/DenseNet: the Wide-DenseNet-BC table and the ImageNet models'
top-1 errors), the memory-efficient technical report (Pleiss et al. 2017, arXiv:1707.06990) and torchvision's
weights documentation (``DenseNet121_Weights`` and kin: ImageNet accuracy of the ported weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CIFAR_COLUMNS = ("C10", "C10+", "C100", "C100+", "SVHN")  # "+": with the standard augmentation
IMAGENET_COLUMNS = ("top-1", "top-1 10-crop", "top-5", "torchvision top-1")  # single-crop at 224 unless named


@dataclass(frozen=True)
class Published:
    """A model's published parameter count (as printed) and test errors in percent, by column."""

    params: str
    errors: dict[str, float] = field(default_factory=dict)
    source: str = ""


def _cifar(*errors: float) -> dict[str, float]:
    return dict(zip(CIFAR_COLUMNS, errors, strict=True))


PAPER_T2 = "paper Table 2"
CODE = "original code's README"

PUBLISHED: dict[str, Published] = {
    "densenet40_k12": Published("1.0M", _cifar(7.00, 5.24, 27.55, 24.42, 1.79), PAPER_T2),
    "densenet100_k12": Published("7.0M", _cifar(5.77, 4.10, 23.79, 20.20, 1.67), PAPER_T2),
    "densenet100_k24": Published("27.2M", _cifar(5.83, 3.74, 23.42, 19.25, 1.59), PAPER_T2),
    "densenet_bc100_k12": Published("0.8M", _cifar(5.92, 4.51, 24.15, 22.27, 1.76), PAPER_T2),
    "densenet_bc250_k24": Published("15.3M", _cifar(5.19, 3.62, 19.64, 17.60, 1.74), PAPER_T2),
    "densenet_bc190_k40": Published("25.6M", {"C10+": 3.46, "C100+": 17.18}, PAPER_T2),
    "wide_densenet_bc40_k36": Published("1.5M", {"C10+": 4.58, "C100+": 22.30}, CODE),
    "wide_densenet_bc40_k48": Published("2.7M", {"C10+": 3.99, "C100+": 20.29}, CODE),
    "wide_densenet_bc40_k60": Published("4.3M", {"C10+": 4.01, "C100+": 19.99}, CODE),
    "densenet121": Published(
        "7,978,856",
        {"top-1": 25.02, "top-1 10-crop": 23.61, "top-5": 7.71, "torchvision top-1": 25.566},
        "paper Table 3; torchvision",
    ),
    "densenet169": Published(
        "14,149,480",
        {"top-1": 23.80, "top-1 10-crop": 22.08, "top-5": 6.85, "torchvision top-1": 24.400},
        "paper Table 3; torchvision",
    ),
    "densenet201": Published(
        "20,013,928",
        {"top-1": 22.58, "top-1 10-crop": 21.46, "top-5": 6.34, "torchvision top-1": 23.104},
        "paper Table 3; torchvision",
    ),
    "densenet161": Published("28,681,000", {"top-1": 22.2, "torchvision top-1": 22.862}, f"{CODE}; torchvision"),
    "densenet264": Published("33M", {"top-1": 22.15, "top-1 10-crop": 20.80, "top-5": 6.12}, "paper Table 3"),
    "densenet232": Published("55M", {"top-1": 21.2}, f"technical report; {CODE}"),
    "densenet264_k48": Published("73M", {"top-1": 20.4}, f"technical report; {CODE} (cosine schedule, 100 epochs)"),
}


def published(name: str) -> Published | None:
    """The published figures of the registered model ``name``, or None for a configuration nobody published."""
    return PUBLISHED.get(name)
