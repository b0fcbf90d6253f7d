"""The documentation's generated blocks, each derived from its one declaration: the command reference from the parser,
the training options from their declarations, the model table from the registry (with the published figures), and the
run and dataset files from their record shapes. Each block sits between ``<!-- generated:NAME -->`` and
``<!-- generated:end -->`` in a page of ``docs/content``; the rest of the page is written by hand.

    python docs/generate.py            # rewrite the blocks (``make docs``)
    python docs/generate.py --check    # exit 1 naming the stale pages (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path

CONTENT = Path(__file__).resolve().parent / "content"
END = "<!-- generated:end -->"


def _start(name: str) -> str:
    return f"<!-- generated:{name} (python docs/generate.py) -->"


def commands_block() -> str:
    from densenet_ray.cli import build_parser
    from densenet_ray.cli.reference import reference

    return reference(build_parser())


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_block() -> str:
    """A table per ``config.yaml`` group: the flag and YAML key, type, default, range, and what the option is."""
    from densenet_ray.train.config.declaration import GROUPS, default_text
    from densenet_ray.train.config.options import training_options

    lines: list[str] = []
    for group in GROUPS:
        options = [option for option in training_options() if option.declaration.group == group]
        if not options:
            continue
        lines += [
            "",
            f"### `{group}`",
            "",
            "| flag | YAML key | type | default | what it does |",
            "|---|---|---|---|---|",
        ]
        for option in options:
            declaration = option.declaration
            kind = " \\| ".join(f"`{choice}`" for choice in option.choices) if option.choices else option.kind
            notes = [declaration.range.describe()] if declaration.range else []
            if declaration.datasets:
                notes.append(f"applies to {', '.join(declaration.datasets)}")
            notes.append("fixed for the run (part of its identity)" if declaration.resume == "fixed" else "")
            notes.append(
                {
                    "searchable": "searchable in sweeps",
                    "shared": "one value for a whole sweep",
                    "owned": "set by a sweep for each trial",
                }[declaration.sweep]
            )
            text = declaration.help + "".join(f"; {note}" for note in notes if note)
            default = default_text(option).removeprefix("default: ")
            lines.append(f"| `{option.flag}` | `{group}.{option.key}` | {kind} | {_cell(default)} | {_cell(text)} |")
    return "\n".join(lines).strip() + "\n"


def models_block() -> str:
    """Every registered model with our exact counts beside what was published, then the published errors."""
    from densenet_ray.models.profile import profile_model
    from densenet_ray.models.published import CIFAR_COLUMNS, IMAGENET_COLUMNS, published
    from densenet_ray.models.registry import get_entry, list_models

    header = ("name", "what it is", "depth", "k", "blocks", "params", "published", "MACs/image")
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in list_models():
        entry, profile, paper = get_entry(name), profile_model(name), published(name)
        config = entry.config
        blocks = "-".join(str(n) for n in config.blocks())
        lines.append(
            f"| `{name}` | {entry.description} | {config.depth} | {config.growth_rate} | {blocks} | "
            f"{profile.params:,} | {paper.params if paper else ''} | {_macs(profile.macs)} |"
        )
    for form, columns in (("cifar", CIFAR_COLUMNS), ("imagenet", IMAGENET_COLUMNS)):
        lines += ["", f"| {form} model | " + " | ".join(columns) + " | source |", "|---" * (len(columns) + 2) + "|"]
        for name in list_models():
            paper = published(name)
            if paper is None or get_entry(name).config.form != form:
                continue
            cells = [f"{paper.errors[column]:.2f}" if column in paper.errors else "" for column in columns]
            lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {paper.source} |")
    return "\n".join(lines) + "\n"


def _macs(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def _type_name(annotation: object) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.replace("typing.", "")


def _field_notes(cls: type) -> dict[str, str]:
    """Each field's description: its trailing ``#`` comment, else its ``name: text`` line in the docstring."""
    notes: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^#]+#\s*(.+)$", line)
        if match:
            notes[match.group(1)] = match.group(2).strip()
    docstring = inspect.getdoc(cls) or ""
    for match in re.finditer(r"^\s*(\w+): (.+(?:\n\s{4,}.+)*)", docstring, re.MULTILINE):
        notes.setdefault(match.group(1), " ".join(match.group(2).split()))
    return notes


def schema_table(cls: type) -> str:
    """A dataclass's JSON fields: name, type, default and description, under its docstring's first paragraph."""
    hints = typing.get_type_hints(cls)
    notes = _field_notes(cls)
    summary = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
    lines = [summary, "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            default = f"`{item.default!r}`"
        elif item.default_factory is not dataclasses.MISSING:
            default = f"`{item.default_factory()!r}`"
        else:
            default = "required"
        note = _cell(notes.get(item.name, ""))
        lines.append(f"| `{item.name}` | `{_cell(_type_name(hints[item.name]))}` | {default} | {note} |")
    return "\n".join(lines) + "\n"


def files_block() -> str:
    from densenet_ray.data.manifest import Manifest, ShardInfo
    from densenet_ray.train.run import record_shapes as shapes

    sections = [
        ("`metrics.jsonl`: an epoch", shapes.EpochRecord),
        ('`metrics.jsonl`: a mid-epoch checkpoint (`"mid_epoch": true`)', shapes.MidEpochRecord),
        ('`metrics.jsonl`: a worker group\'s start (`"attempt": true`)', shapes.AttemptRecord),
        ('`metrics.jsonl`: a preemption notice (`"preempted": true`)', shapes.PreemptionRecord),
        ('`metrics.jsonl`: a profile (`"profile": true`)', shapes.ProfileRecord),
        ("`progress.json`", shapes.ProgressRecord),
        ("`{split}.json`: the dataset manifest", Manifest),
        ("`{split}.json`: each entry of `shards`", ShardInfo),
    ]
    return "\n".join(f"### {title}\n\n{schema_table(cls)}" for title, cls in sections)


def api_block() -> str:
    """A mkdocstrings entry for every name ``densenet_ray`` exports, in its export table's order."""
    import densenet_ray

    lines = []
    for name, module in densenet_ray._EXPORTS.items():
        lines += [f"::: {module}.{name}"]
        if name == "TrainConfig":  # its fields are the training options, listed on their own page
            lines += ["    options:", "      members: false"]
        lines.append("")
    return "\n".join(lines)


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "commands": ("reference/commands.md", commands_block),
    "options": ("reference/options.md", options_block),
    "models": ("models.md", models_block),
    "files": ("reference/files.md", files_block),
    "api": ("reference/api.md", api_block),
}


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the part between ``name``'s markers replaced by ``block``."""
    head, found, rest = text.partition(_start(name))
    if not found:
        raise SystemExit(f"no {_start(name)} marker")
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"no {END} after {_start(name)}")
    return f"{head}{_start(name)}\n{block}{END}{tail}"


def generated_pages() -> dict[Path, str]:
    """Every page with a generated block, as it should read now."""
    pages: dict[Path, str] = {}
    for name, (page, make) in BLOCKS.items():
        path = CONTENT / page
        text = pages.get(path) or path.read_text()
        pages[path] = replace_block(text, name, make())
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate (or --check) the documentation's generated blocks")
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale, and write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_pages().items():
        if path.read_text() == text:
            continue
        stale.append(str(path.relative_to(CONTENT)))
        if not args.check:
            path.with_suffix(".tmp").write_text(text)
            os.replace(path.with_suffix(".tmp"), path)
    if args.check and stale:
        print(f"stale generated pages: {', '.join(stale)}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
