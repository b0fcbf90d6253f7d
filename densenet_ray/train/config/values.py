"""How option values are read and parsed beyond their type: YAML files of options, ``--workers MIN-MAX``, the
tracking services of ``--log``, custom worker resources, ``--profile-steps A-B``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from densenet_ray.errors import UserError

TRACKERS = ("mlflow", "wandb")  # through ray.air.integrations; TensorBoard is always written


def read_yaml_mapping(path: str, flag: str, expected: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (given as ``flag``); one-line :class:`UserError` when it cannot be read,
    is not YAML, or is not a mapping (``expected`` says what it should hold)."""
    import yaml

    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise UserError(f"{flag} {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{flag} {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise UserError(f"{flag} {path} must hold {expected}")
    return document


def split_worker_range(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """``workers: "MIN-MAX"`` (a flag or YAML) as ``workers: MAX, min_workers: MIN``; other values as they are."""
    text = values.get("workers")
    if not isinstance(text, str):
        return values
    least, dash, most = text.strip().partition("-")
    try:
        low, high = (int(least), int(most)) if dash else (int(least), int(least))
    except ValueError:
        raise UserError(f"workers: {text!r} in {origin} must be N or MIN-MAX, e.g. 4 or 2-4") from None
    return {**values, "workers": high, "min_workers": low if dash else values.get("min_workers")}


def trackers(log: str) -> list[str]:
    """The tracking services named in a ``--log`` value (``"mlflow,wandb"``)."""
    return [name.strip() for name in log.split(",") if name.strip()]


def check_worker_resources(resources: dict[str, float] | None) -> None:
    if resources is None:
        return
    amounts = all(
        isinstance(name, str) and isinstance(amount, int | float) and not isinstance(amount, bool) and amount >= 0
        for name, amount in resources.items()
    )
    if not amounts or {"CPU", "GPU"} & set(resources):
        raise UserError(
            f"--worker-resources {resources!r} must map custom resource names to amounts >= 0, "
            'e.g. {"fake_gpu": 1} (CPU and GPU come from --cpus-per-worker and --gpu)'
        )


def check_trackers(log: str) -> None:
    """Every service ``--log`` names is one of :data:`TRACKERS`."""
    unknown = [name for name in trackers(log) if name not in TRACKERS]
    if unknown:
        raise UserError(f"--log {log!r}: {unknown[0]!r} is not one of: {', '.join(TRACKERS)}")


@dataclass(frozen=True)
class StepRange:
    """Global steps ``first`` to ``last``, both 1-indexed and included."""

    first: int
    last: int


def parse_profile_steps(text: str) -> StepRange | None:
    """``"10-15"`` as a :class:`StepRange` (``""``: none); a one-line :class:`UserError` naming what is wrong."""
    if not text:
        return None
    first, dash, last = text.strip().partition("-")
    if not (dash and first.strip().isdigit() and last.strip().isdigit()):
        raise UserError(f"--profile-steps {text!r} must be A-B, the first and last global step to trace, e.g. 10-15")
    steps = StepRange(int(first), int(last))
    if not 1 <= steps.first <= steps.last:
        raise UserError(f"--profile-steps {text!r}: steps count from 1 and B must be at least A, e.g. 10-15")
    return steps
