"""``densenet-ray cluster validate [FILE]``: a Ray cluster-launcher config checked offline by Ray itself."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys

from densenet_ray.errors import UserError


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``cluster validate``."""
    parser = groups.add_parser("cluster", help="Ray cluster-launcher configs (ray up)")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="cluster_command", metavar="COMMAND", parser_class=type(parser))
    validate = commands.add_parser(
        "validate", help="check a cluster config against Ray's schema and defaults, offline (no cloud calls)"
    )
    validate.add_argument("file", nargs="?", default="cluster.yaml", metavar="FILE", help="default cluster.yaml")
    validate.set_defaults(handler=validate_command)


def validate_cluster_config(path: str) -> None:
    """Ray's own checks (``prepare_config`` fills in the provider's defaults, ``validate_config`` applies the
    schema and the cross-field rules); ``ValueError`` with one line naming the file and the problem."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    from densenet_ray.train.config.values import read_yaml_mapping

    config = read_yaml_mapping(path, "cluster config", "a mapping (cluster_name, provider, ...)")

    logging.getLogger("ray").setLevel(logging.WARNING)  # prepare_config logs its defaults at INFO
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            validate_config(prepare_config(config))
    except Exception as error:  # jsonschema.ValidationError, ValueError, KeyError, yaml errors from defaults
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        where = "/".join(str(part) for part in getattr(error, "absolute_path", []) or [])
        first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
        suffix = f" (at {where})" if where else ""
        raise UserError(f"{path} is not a valid Ray cluster config: {first}{suffix}") from None


def validate_command(args: argparse.Namespace) -> int:
    validate_cluster_config(args.file)
    print(f"valid: {args.file}", file=sys.stdout)
    return 0
