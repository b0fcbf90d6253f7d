"""``dr.fit(config)``: one training run on Ray Train, under the same cluster rules as ``densenet-ray train``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from densenet_ray.errors import RunFailed, UserError
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import RayOptions
from densenet_ray.train.config.options import TrainConfig

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class FitResult:
    """What a run left: its directory, its epoch records (``metrics.jsonl``'s, every attempt's), its last committed
    checkpoint and the one with the best test error (of the moving average's with ``--ema``), the last epoch's
    figures, the failure (``error``) when ``fit`` was asked not to raise it, and the run's options with every default
    filled in (``options.data``: where its shards are)."""

    run_dir: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    final: dict[str, Any] = field(default_factory=dict)
    error: RunFailed | None = None
    options: TrainConfig | None = None


def fit(
    config: TrainConfig | Mapping[str, Any],
    local: bool = False,
    verbose: bool = False,
    print_line: PrintLine | None = print,
    raise_on_failure: bool = True,
    console: Console | None = None,
) -> FitResult:
    """Train one run, as ``densenet-ray train`` does: ``RAY_ADDRESS``'s cluster, else one started on this machine,
    else (or with ``local``) a private Ray instance sized for the run. ``config``: a :class:`TrainConfig` or a
    mapping of its options (a YAML file's). The same ``name`` resumes a run. Progress goes to ``print_line`` (None:
    quiet), as a progress bar to ``console`` (a rich ``Console``) when that is a terminal. A user mistake raises
    :class:`~densenet_ray.errors.UserError` before Ray starts; a failure inside Ray raises
    :class:`~densenet_ray.errors.RunFailed` (with ``raise_on_failure=False``: returned as ``error``)."""
    from densenet_ray.train.config.resolved import resolve
    from densenet_ray.train.launcher import launch

    options = _options(config)
    resolved = resolve(options)
    quiet = print_line is None
    try:
        final = launch(
            resolved,
            print_line or (lambda line: None),
            follow=not quiet,
            ray_options=RayOptions(local, verbose),
            console=console,
        )
    except RunFailed as failure:
        if raise_on_failure:
            raise
        return _result(resolved.run_url, {}, failure, resolved.options)
    return _result(str(final["run_dir"]), final, None, resolved.options)


def _options(config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return TrainConfig.from_sources(dict(config), {}, origins=("the options", "the options"))
    raise UserError(f"config is a {type(config).__name__}; give a TrainConfig or a mapping of its options")


def _result(run_dir: str, final: dict[str, Any], error: RunFailed | None, options: TrainConfig) -> FitResult:
    from densenet_ray.train.run.directory import RunDirectory

    records, _ = RunDirectory(run_dir).metrics()
    return FitResult(
        run_dir=run_dir,
        metrics=[dataclasses.asdict(record) for record in records],
        checkpoint=_checkpoint(run_dir, "last"),
        best_checkpoint=_checkpoint(run_dir, "best"),
        final=final,
        error=error,
        options=options,
    )


def _checkpoint(run_dir: str, which: str) -> str | None:
    from densenet_ray.train.checkpoint.trained import checkpoint_location

    try:
        return checkpoint_location(run_dir, which)
    except UserError:  # no committed (epoch-end) checkpoint yet
        return None
