"""The command reference, generated from the parser itself, so every flag's documentation is its ``--help`` line:
``python -m densenet_ray.cli.reference`` prints it, ``docs/generate.py`` puts it into the documentation site's
Commands page (``make docs``), and a test fails when that copy is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator


def commands(
    parser: argparse.ArgumentParser, path: str = "densenet-ray"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command and subcommand with its parser, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, f"{path} {name}")


def _rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
            continue
        name = ", ".join(f"`{option}`" for option in action.option_strings) or f"`{action.metavar or action.dest}`"
        if action.option_strings and action.nargs != 0 and action.choices:
            name += " " + "\\|".join(str(choice) for choice in action.choices)
        elif action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        text = (action.help or "").replace("|", "\\|").replace("\n", " ")
        rows.append((name, text % vars(action) if "%(" in text else text))
    return rows


def reference(parser: argparse.ArgumentParser) -> str:
    """Markdown: one table per command (and per group with options of its own); commands with the same arguments
    share a table."""
    tables: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for path, command in commands(parser):
        rows = _rows(command)
        group = any(isinstance(action, argparse._SubParsersAction) for action in command._actions)
        if rows or not group:  # a group without options of its own: its subcommands carry the flags
            tables.setdefault(tuple(rows), []).append(path)
    lines = []
    for shared, paths in tables.items():
        lines += ["", f"**{' / '.join(f'`{path}`' for path in paths)}**", ""]
        lines += ["| argument | what it does |", "|---|---|"] if shared else ["(no options)"]
        lines += [f"| {name} | {text} |" for name, text in shared]
    return "\n".join(lines).strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    from densenet_ray.cli import build_parser

    argparse.ArgumentParser(description="print the command reference (Markdown)").parse_args(argv)
    print(reference(build_parser()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
