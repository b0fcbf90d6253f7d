"""The flags of the training options, derived from their declarations (:mod:`densenet_ray.train.config.options`), shared
by ``train`` and ``tune``.

Every flag defaults to ``None``, so a ``--config`` file's value is overridden only by a flag the user gave, and the
paper's defaults are filled in by :func:`densenet_ray.train.config.resolved.resolve`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from densenet_ray.train.config.declaration import Declared, default_text
from densenet_ray.train.config.options import training_options

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON; expected an object like '{{\"fake_gpu\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


def _help(option: Declared, text: str | None = None) -> str:
    default = default_text(option)
    text = text or option.declaration.help
    return f"{text} ({default})" if default else text


def option_flags(option: Declared) -> list[tuple[str, dict[str, Any]]]:
    """The ``(flag, add_argument keywords)`` pairs of one option: its own flag (a value, or a switch for a bool that
    is off by default), a ``--no-...`` flag, and flags that each set one of its choices."""
    declaration, dest = option.declaration, option.name
    flags: list[tuple[str, dict[str, Any]]] = []
    if option.kind == "bool":
        if option.default is not True:
            flags.append((option.flag, {"dest": dest, "action": "store_const", "const": True, "help": _help(option)}))
        if declaration.negative:
            text = declaration.negative_help or declaration.help
            flags.append((declaration.negative, {"dest": dest, "action": "store_const", "const": False, "help": text}))
        return flags
    keywords: dict[str, Any] = {"dest": dest, "default": None, "help": _help(option)}
    keywords["type"] = _json_object if option.kind == "dict" else _TYPES[option.kind]
    if option.choices:
        keywords["choices"] = option.choices
    if declaration.metavar:
        keywords["metavar"] = declaration.metavar
    keywords.update(dict(declaration.cli))
    flags.append((option.flag, keywords))
    for alias, choice in declaration.aliases:
        text = f"{option.flag} {choice}"
        flags.append((alias, {"dest": dest, "action": "store_const", "const": choice, "help": text}))
    return flags


def add_training_options(
    parser: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    choices: dict[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """Add the flags of the options ``names`` (all when None), under their groups; ``choices`` narrows an option's
    choices for this command (``dataset`` of ``train cifar``), its first choice then being the default. Returns the
    options added. An option that shares another's flag (``min_workers``: ``--workers MIN-MAX``) adds none."""
    wanted = None if names is None else set(names)
    narrowed = choices or {}
    groups: dict[str, Any] = {}
    added: list[str] = []
    seen: set[str] = set()
    for option in training_options():
        if wanted is not None and option.name not in wanted:
            continue
        added.append(option.name)
        if option.name in narrowed:
            option = dataclasses.replace(option, choices=narrowed[option.name], default=narrowed[option.name][0])
        for flag, keywords in option_flags(option):
            if flag in seen:
                continue
            seen.add(flag)
            group = option.group
            if group not in groups:
                groups[group] = parser.add_argument_group(group)
            groups[group].add_argument(flag, **keywords)
    return added
