"""The flags that choose the Ray cluster and its verbosity, shared by every command that starts Ray work."""

from __future__ import annotations

import argparse

from densenet_ray.ray_session import RayOptions


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--local`` and ``--verbose`` (see :mod:`densenet_ray.ray_session` for which cluster is used)."""
    group = parser.add_argument_group("Ray")
    group.add_argument(
        "--local",
        action="store_true",
        help="start a private local Ray instance even when a cluster started on this machine is running "
        "(without RAY_ADDRESS, such a cluster is used by default)",
    )
    group.add_argument(
        "--verbose", action="store_true", help="let Ray's and PyTorch's own start-up and worker logs through"
    )


def ray_options(args: argparse.Namespace) -> RayOptions:
    """The :class:`RayOptions` the flags ask for."""
    return RayOptions(local=bool(getattr(args, "local", False)), verbose=bool(getattr(args, "verbose", False)))
