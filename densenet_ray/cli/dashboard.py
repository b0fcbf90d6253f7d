"""``densenet-ray dashboard``: one terminal view of the cluster, its jobs, training runs and sweeps."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich.console import Console

from densenet_ray.dashboard.client import SEND_TOKEN_FLAG
from densenet_ray.errors import UserError
from densenet_ray.paths import HOME_ROOT, absolute_location


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``dashboard``."""
    parser = groups.add_parser(
        "dashboard",
        help="live view of the cluster, jobs, training runs and sweeps",
        description=(
            "What runs, how far along, how fast, how good, and what failed. Reads the Ray dashboard's API (jobs, "
            "nodes, Ray Train runs) and the run storage (metrics of every run and sweep). Off a terminal, or with "
            "--once, it prints one snapshot."
        ),
    )
    parser.add_argument(
        "--address", help="Ray dashboard URL, e.g. http://HEAD:8265 (default RAY_ADDRESS, else this machine's cluster)"
    )
    parser.add_argument(
        "--storage",
        action="append",
        metavar="URL",
        help="run or sweep storage to scan (a directory or s3://bucket/prefix; repeatable); works with no cluster",
    )
    parser.add_argument(
        "--no-cluster", action="store_true", help="read --storage only; do not look for a cluster on this machine"
    )
    parser.add_argument(
        SEND_TOKEN_FLAG,
        action="store_true",
        help=(
            "send this machine's Ray token file (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token) to an --address "
            "beyond 127.0.0.1 and localhost as well; RAY_AUTH_TOKEN is sent to any address"
        ),
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    parser.add_argument("--interval", type=float, default=2.0, metavar="SEC", help="poll every SEC s (>= 1, default 2)")
    parser.add_argument("--limit", type=int, default=10, metavar="N", help="rows per table (default 10)")
    color = parser.add_mutually_exclusive_group()
    color.add_argument("--force-color", action="store_true", help="colour even when not writing to a terminal")
    color.add_argument("--no-color", action="store_true", help="no colour (NO_COLOR works too)")
    parser.set_defaults(handler=dashboard_command)


def storage_roots(given: list[str] | None) -> list[str]:
    """The ``--storage`` values as absolute paths or URLs; a local one must be an existing directory."""
    roots = []
    for root in given or []:
        if "://" in root and not root.startswith("file://"):
            roots.append(root)
            continue
        path = absolute_location(root.removeprefix("file://"))
        if not os.path.isdir(path):
            raise UserError(f"--storage {root}: no such directory (give a run or sweep storage directory, or s3://)")
        roots.append(path)
    return roots


def make_poller(  # noqa: ANN201 - a Poller
    address: str | None, roots: list[str], no_cluster: bool = False, send_token: bool = False
):
    """The poller for the given address and roots: storage alone when no cluster is given or found here.
    ``send_token``: this machine's token file goes to a cluster elsewhere too (``--send-token``)."""
    from densenet_ray.dashboard.address import configured_address, resolve_address
    from densenet_ray.dashboard.poll import Poller

    if no_cluster:
        if address or not roots:
            raise UserError("--no-cluster reads storage only: give --storage, and no --address")
        return Poller(None, roots, note="storage only (--no-cluster)")
    url = resolve_address(address, send_token)
    if url is not None:
        # A cluster found running on this machine (no address, or `auto`) gets the token file whatever its
        # dashboard's address: this machine is one of its nodes.
        here = configured_address(address) in (None, "auto")
        return Poller(url, roots, send_token=send_token or here)
    if not roots and os.path.isdir(HOME_ROOT):
        roots = [HOME_ROOT]
    if not roots:
        raise UserError(
            "no Ray cluster runs on this machine and no --storage was given: pass --address http://HEAD:8265 "
            "(or set RAY_ADDRESS), or --storage DIR|s3://... to read runs without a cluster"
        )
    return Poller(None, roots, note="no Ray cluster on this machine: showing storage only (--address to add one)")


def _console(args: argparse.Namespace) -> Console:
    from densenet_ray.cli.output import make_console

    if args.force_color:
        return make_console(force_terminal=True)
    return make_console(no_color=True) if args.no_color else make_console()


def dashboard_command(args: argparse.Namespace) -> int:
    from densenet_ray.dashboard.client import ClusterError
    from densenet_ray.dashboard.live import MIN_INTERVAL, run_live
    from densenet_ray.dashboard.render import render

    if args.interval < MIN_INTERVAL:
        raise UserError(f"--interval {args.interval:g} is too short: data is polled at most once a second (>= 1)")
    if args.limit < 1:
        raise UserError(f"--limit {args.limit} must be at least 1")
    roots = storage_roots(args.storage)
    try:
        poller = make_poller(args.address, roots, args.no_cluster, args.send_token)
        live = not (args.once or args.json) and sys.stdout.isatty() and sys.stdin.isatty()
        if live:
            return run_live(poller, _console(args), args.interval, args.limit)
        snapshot = poller.poll(strict=True)
        if poller.client is None and not snapshot.runs and not snapshot.sweeps:
            raise UserError(
                f"no training runs or sweeps under {', '.join(poller.storage)} (a run directory holds config.yaml "
                "and metrics.jsonl, a sweep's holds sweep.json)"
            )
        if args.json:
            print(json.dumps(snapshot.to_json(), default=str))
        else:
            _console(args).print(render(snapshot, args.limit))
        return 0
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
