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
    from densenet_ray.cli.train_options import option_flags
    from densenet_ray.train.config.declaration import GROUPS, default_text
    from densenet_ray.train.config.options import training_options

    lines: list[str] = []
    for group in GROUPS:
        options = [option for option in training_options() if option.group == group]
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
            flags = ", ".join(f"`{flag}`" for flag, _ in option_flags(option))  # the flags the parser has
            lines.append(f"| {flags} | `{group}.{option.key}` | {kind} | {_cell(default)} | {_cell(text)} |")
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
    """Each field's description: its meaning below (``FIELD_MEANINGS``) and its trailing ``#`` comment, else its
    ``name: text`` entry in the docstring's ``Attributes:`` section."""
    comments: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^#]+#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    attributes = _docstring_attributes(inspect.getdoc(cls) or "")
    meanings = FIELD_MEANINGS.get(cls.__name__, {})
    notes = {}
    for item in dataclasses.fields(cls):
        parts = [meanings.get(item.name, ""), comments.get(item.name, "")]
        notes[item.name] = "; ".join(part for part in parts if part) or attributes.get(item.name, "")
    return notes


def _docstring_attributes(docstring: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section, each with its more-indented continuation
    lines (and none of the next entry's)."""
    _, found, section = docstring.partition("Attributes:\n")
    entries: dict[str, str] = {}
    name, indent = None, 0
    for line in section.splitlines() if found else []:
        depth = len(line) - len(line.lstrip())
        if name and line.strip() and depth > indent:
            entries[name] += " " + line.strip()
            continue
        match = re.match(r"(\s+)(\w+): (.+)$", line)
        if not match:
            break  # the section ends at its first line that is neither an entry nor a continuation
        name, indent = match.group(2), len(match.group(1))
        entries[name] = match.group(3).strip()
    return {name: text.removesuffix(".") for name, text in entries.items()}


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


_TIME = "when the record was written, in seconds since the Unix epoch"
_STEP = "batches each rank has trained on since the run began (the step TensorBoard's curves are drawn at)"

# What each record field means, read from the code that fills it (``train/progress/records.py``, ``train/worker.py``,
# ``train/profiling.py``); a field's own ``#`` comment in ``record_shapes.py`` is added after it. A field with no
# meaning here or there fails ``tests/docs/test_pages.py``.
FIELD_MEANINGS: dict[str, dict[str, str]] = {
    "EpochRecord": {
        "epoch": "epochs done, this one included (1-indexed: the first epoch's record says 1)",
        "epochs": "the run's `--epochs`",
        "step": _STEP,
        "loss": "mean training loss over rank 0's batches of the epoch (after a mid-epoch resume, those since it)",
        "train_error": "the share of rank 0's training samples of the epoch whose top-1 class is wrong, against the "
        "true labels (multi-label: samples with any class wrong at probability 0.5)",
        "test_loss": "mean loss over every test sample, each evaluated once over all ranks",
        "test_error": "the error runs are ranked by: top-1 error over every test sample, or for multi-label data "
        "1 - `test_auroc`",
        "test_top5_error": "the share of test samples whose class is not among the model's 5 highest scores",
        "best_test_error": "the lowest `test_error` of any epoch so far, this one included",
        "test_samples": "how many test samples were evaluated (over all ranks)",
        "ema_test_error": "`test_error` of the weights' moving average (`--ema`)",
        "ema_test_top5_error": "`test_top5_error` of the weights' moving average (`--ema`)",
        "test_auroc": "multi-label: mean AUROC over the classes that have both positive and negative test samples",
        "test_map": "multi-label: mean average precision over the same classes",
        "test_f1": "multi-label: macro F1 at probability 0.5",
        "test_auroc_by_class": "multi-label: each class's AUROC by class name (`null` for a class without both "
        "positive and negative test samples)",
        "ema_test_auroc": "multi-label: `test_auroc` of the weights' moving average (`--ema`)",
        "images_per_s": "training images per second over all ranks, over the epoch's whole training pass (its first "
        "steps included, evaluation not)",
        "steady_images_per_s": "the same without the epoch's first 5 steps (equal to `images_per_s` in an epoch of 5 "
        "steps or fewer)",
        "first_step_time": "when this worker group's first training step finished, in seconds since the Unix epoch",
        "seconds_per_iteration": "seconds of the epoch's training pass per batch",
        "epoch_seconds": "seconds of the epoch's training pass on rank 0 (evaluation not included)",
        "data_wait_fraction": "the share of the training pass rank 0 spent waiting for its data loader",
        "skipped_samples": "training and test samples rank 0 skipped in the epoch because they did not decode",
        "bad_steps": "optimizer steps of the epoch skipped on every rank because a loss or gradient was not finite "
        "on some rank (those a rollback undid are not counted: `bad-steps.jsonl` has them)",
        "peak_memory_mb": "rank 0's peak memory in MB: the CUDA allocator's peak on a GPU, the process's peak resident "
        "set on a CPU",
        "time": _TIME,
    },
    "BadStepRecord": {
        "action": "`skipped` (the step was not applied), `rolled back` (after `--max-bad-steps` skips in a row the "
        "run went back to its last checkpoint) or `ended` (no rollback was left: the run ended)",
        "epoch": "the epoch in progress, 0-indexed",
        "batch": "the step's last batch in the epoch, 0-indexed",
        "step": _STEP + ", this batch included",
        "samples": "the keys of that batch's samples on every rank, rank by rank (empty for a rollback)",
        "rollbacks": "the rollbacks so far, this one included",
        "lr_scale": "what they multiply the learning rate by (`--rollback-lr-scale` to the power of `rollbacks`)",
        "time": _TIME,
    },
    "MidEpochRecord": {
        "epoch": "the epoch in progress, 0-indexed",
        "step": _STEP,
        "loss": "mean training loss over rank 0's batches of the epoch so far",
        "mid_epoch": "marks the record as a mid-epoch checkpoint's",
        "world_size": "the ranks training",
        "time": _TIME,
    },
    "AttemptRecord": {
        "world_size": "the workers the group started with",
        "epoch": "the epoch it starts in, 0-indexed",
        "batch": "global batches of that epoch already done (0: it starts at the epoch's start)",
        "resumed": "whether it goes on from a checkpoint",
        "attempt": "marks the record as a worker group's start",
        "time": _TIME,
    },
    "PreemptionRecord": {
        "epoch": "the epoch in progress, 0-indexed",
        "step": _STEP + ", at the checkpoint written on the notice",
        "nodes": "the IDs of the nodes Ray said will go",
        "ranks": "the ranks on those nodes",
        "deadline": "when the nodes go, in seconds since the Unix epoch",
        "world_size": "the ranks training",
        "preempted": "marks the record as a preemption notice",
        "time": _TIME,
    },
    "ProfileRecord": {
        "first": "the first traced global step",
        "last": "the last traced global step",
        "seconds": "rank 0's time over the traced steps",
        "data_share": "the share of that time spent waiting for the data loader",
        "communication_share": "the share of that time spent in DDP's collectives",
        "operators": "rank 0's top operators by self time (kernels on a GPU), each [name, self milliseconds, share "
        "of all self time, calls]",
        "device": "`CPU` or `GPU`: what the operators ran on",
        "traces": "the directory that holds every rank's trace",
        "profile": "marks the record as a profile",
        "time": _TIME,
    },
    "ProgressRecord": {
        "epoch": "the epoch in progress, 1-indexed",
        "batch": "rank 0's batches done in it",
        "batches": "the batches each rank takes in the epoch",
        "loss": "mean training loss over rank 0's batches of the epoch so far",
        "images_per_s": "training images per second over all ranks since the end of the epoch's first step "
        "(`null` until a later step is measured)",
        "eta_seconds": "seconds left in the epoch at that pace (`null` until a later step is measured)",
        "time": _TIME,
        "first_step_seconds": "while `images_per_s` is `null`: how long the epoch's first step took (start-up and "
        "compilation included)",
    },
    "ShardInfo": {
        "name": "the shard's file name, relative to the manifest",
        "samples": "the samples it holds",
        "bytes": "its size in bytes",
        "sha256": "the SHA-256 of its bytes (`data verify` checks it)",
        "index": "the file name of its sample index (empty for shards built before indexes, which are read whole)",
    },
    "Manifest": {
        "format": "the manifest's format and version, `densenet-ray-shards/1`",
        "created_by": "the densenet-ray version that built the shards",
    },
}


def files_block() -> str:
    from densenet_ray.data.format.manifest import Manifest, ShardInfo
    from densenet_ray.train.run import record_shapes as shapes

    sections = [
        ("`metrics.jsonl`: an epoch", shapes.EpochRecord),
        ('`metrics.jsonl`: a mid-epoch checkpoint (`"mid_epoch": true`)', shapes.MidEpochRecord),
        ('`metrics.jsonl`: a worker group\'s start (`"attempt": true`)', shapes.AttemptRecord),
        ('`metrics.jsonl`: a preemption notice (`"preempted": true`)', shapes.PreemptionRecord),
        ('`metrics.jsonl`: a profile (`"profile": true`)', shapes.ProfileRecord),
        ("`progress.json`", shapes.ProgressRecord),
        ("`bad-steps.jsonl`: a step that was not finite, a rollback, an end", shapes.BadStepRecord),
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
