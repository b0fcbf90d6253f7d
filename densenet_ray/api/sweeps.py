"""``dr.sweep(...)``: a sweep of training runs on Ray Tune, the paper's studies or a space of your own.

Named ``sweep`` rather than ``tune``: ``densenet_ray.tune`` is the subpackage that runs sweeps on Ray Tune, and a
submodule's import would replace a package attribute of the same name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from densenet_ray.errors import UserError
from densenet_ray.paths import SWEEPS_ROOT
from densenet_ray.printing import PrintLine
from densenet_ray.ray_session import RayOptions
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.tune.sweeps import SWEEP_OWNED, Sweep, load_space, named_sweep, space_sweep

if TYPE_CHECKING:
    from rich.console import Console

    from densenet_ray.tune.report import TrialRow

# The training options a sweep's caller may give for every trial: those declared shared by all trials, and storage
# (where sweeps live).
CALLER_OPTIONS = (*(o.name for o in training_options() if o.declaration.sweep == "shared"), "storage")


@dataclass
class SweepResult:
    """A finished sweep: where it lives (``results.json`` and ``results.csv`` are saved there) and its table's rows
    (one per trial: its options, status, errors, time and memory; a failed trial's row carries its cause)."""

    experiment: str
    rows: list[TrialRow]

    @property
    def failed(self) -> list[TrialRow]:
        """The rows of the trials that ended in an error, each with its cause."""
        return [row for row in self.rows if row.status == "error"]


def sweep(
    kind: str,
    space: str | Mapping[str, Any] | None = None,
    name: str | None = None,
    scheduler: str | None = None,
    grace_period: int | None = None,
    reduction_factor: int | None = None,
    max_concurrent: int | None = None,
    local: bool = False,
    verbose: bool = False,
    print_line: PrintLine | None = print,
    console: Console | None = None,
    **options: Any,
) -> SweepResult:
    """Run (or, with an existing ``name``, resume) a sweep, as ``densenet-ray tune`` does.

    ``kind``: ``wide``, ``deep`` or ``growth`` (the paper's studies), or ``custom`` with ``space``, a search space
    (a YAML file, see ``jobs/``, or the same mapping). ``options``: training options for every trial (``data=``,
    ``epochs=``, ``workers=`` per trial, ``storage=`` where sweeps live, ...). ``scheduler``: ``fifo`` or ``asha``
    (with ``grace_period`` and ``reduction_factor``). Progress goes to ``print_line`` (None: quiet) and a bar of
    trials done to ``console`` (a rich ``Console``) in a terminal: the lines ``densenet-ray tune`` prints, Ray
    Tune's own reporter and Ray's logs only with ``verbose``. Raises :class:`~densenet_ray.errors.UserError`
    for bad input before Ray starts, :class:`~densenet_ray.tune.runner.SweepInterrupted` when interrupted (the same
    ``name`` resumes it)."""
    plan = _sweep(kind, space, scheduler, grace_period, reduction_factor)
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent {max_concurrent} must be at least 1")
    owned = [key for key in options if key in SWEEP_OWNED and key not in CALLER_OPTIONS]
    if owned:
        raise UserError(f"{owned[0]!r} is set by the sweep itself for each trial; leave it out")
    base = TrainConfig.from_sources({}, {"workers": 1, "storage": SWEEPS_ROOT, **options}, ("", "the options"))
    # Imported once the input is checked: Ray Tune and PyTorch take 3-4 CPU-seconds to import, which a mistyped
    # space file or option should not wait for.
    from densenet_ray.tune.runner import run_sweep

    quiet = print_line or (lambda line: None)
    experiment, rows = run_sweep(plan, base, name, max_concurrent, quiet, RayOptions(local, verbose), console)
    return SweepResult(experiment, rows)


def _sweep(
    kind: str, space: str | Mapping[str, Any] | None, scheduler: str | None, grace: int | None, reduction: int | None
) -> Sweep:
    if kind != "custom":
        sweep = named_sweep(kind, scheduler or "fifo")
    elif isinstance(space, Mapping):
        sweep = space_sweep(dict(space), "space", scheduler)
    elif space:
        sweep = load_space(space, scheduler)
    else:
        raise UserError("a custom sweep needs space=FILE.yaml or a mapping (its search space)")
    sweep.grace_period = sweep.grace_period if grace is None else grace
    sweep.reduction_factor = sweep.reduction_factor if reduction is None else reduction
    if sweep.grace_period < 1 or sweep.reduction_factor < 2:
        raise UserError(
            f"--grace-period {sweep.grace_period} must be >= 1 and --reduction-factor {sweep.reduction_factor} >= 2"
        )
    return sweep
