"""densenet-ray: DenseNets trained at cluster scale on Ray Train and Ray Tune, from Python or the command line.

    import densenet_ray as dr
    model = dr.create_model("densenet_bc100_k12")           # list_models(), profile_model() too
    result = dr.fit(dr.TrainConfig(data="s3://bucket/cifar10", workers=4, epochs=300))
    classifier = dr.load(result.run_dir, which="best")
    classifier.predict(["cat.jpg"], top=5)
    dr.evaluate(result.run_dir, data="s3://bucket/cifar10")
    dr.sweep("wide", data="s3://bucket/cifar10", epochs=1).rows

Every name is imported when first used (PEP 562), so ``import densenet_ray`` imports neither Ray nor PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from densenet_ray.version import __version__

# Each public name and the module that defines it.
_EXPORTS = {
    "create_model": "densenet_ray.models.registry",
    "list_models": "densenet_ray.models.registry",
    "profile_model": "densenet_ray.models.profile",
    "TrainConfig": "densenet_ray.train.config.options",
    "fit": "densenet_ray.api.training",
    "FitResult": "densenet_ray.api.training",
    "load": "densenet_ray.api.classifier",
    "Classifier": "densenet_ray.api.classifier",
    "Prediction": "densenet_ray.api.classifier",
    "evaluate": "densenet_ray.api.evaluation",
    "sweep": "densenet_ray.api.sweeps",
    "SweepResult": "densenet_ray.api.sweeps",
    "UserError": "densenet_ray.errors",
    "DataError": "densenet_ray.errors",
    "RunFailed": "densenet_ray.errors",
}
__all__ = [
    "Classifier",
    "DataError",
    "FitResult",
    "Prediction",
    "RunFailed",
    "SweepResult",
    "TrainConfig",
    "UserError",
    "__version__",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load",
    "profile_model",
    "sweep",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from densenet_ray.api.classifier import Classifier, Prediction, load
    from densenet_ray.api.evaluation import evaluate
    from densenet_ray.api.sweeps import SweepResult, sweep
    from densenet_ray.api.training import FitResult, fit
    from densenet_ray.errors import DataError, RunFailed, UserError
    from densenet_ray.models.profile import profile_model
    from densenet_ray.models.registry import create_model, list_models
    from densenet_ray.train.config.options import TrainConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'densenet_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
