"""Stored files checked against the shapes the dashboard draws them from. A file edited by hand, damaged, or written
by something else (``epochs: [1]``, a loss that is a string) is :class:`Unreadable`: one line naming the file and
the field, shown as a note while the rest of the dashboard is drawn."""

from __future__ import annotations

import dataclasses
from typing import Any

# An annotation's base type -> the Python types a stored value of it may have, and how a message names it.
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "a whole number"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "list": ((list,), "a list"),
    "dict": ((dict,), "a mapping"),
}


class Unreadable(ValueError):
    """A stored file without the shape it should have; the message is one line naming the file and what is wrong."""


def wrong(name: str, value: Any, kind: str) -> str | None:
    """Why ``value`` (field ``name``) is not of ``kind`` (``int``, ``float``, ``str``, ...), or None when it is;
    ``True`` is no number, ``3.0`` is a whole one."""
    types, words = _KINDS[kind]
    if isinstance(value, types) and (kind == "bool" or not isinstance(value, bool)):
        return None
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return None  # a writer's JSON default=float turns NumPy integers into 3.0
    return f"{name} is {_short(value)}, not {words}"


def record_problem(record: Any) -> str | None:
    """The first field of a record (a dataclass read from a file without checks) whose value does not have its
    declared type, as a sentence; None when every field has."""
    for field in dataclasses.fields(record):
        value, annotation = getattr(record, field.name), str(field.type)
        if value is None and "None" in annotation:
            continue
        kind = annotation.split("|")[0].split("[")[0].strip()
        problem = wrong(field.name, value, kind) if kind in _KINDS else None
        if problem:
            return problem
    return None


def check_fields(where: str, document: dict[str, Any], kinds: dict[str, str]) -> None:
    """Raise :class:`Unreadable` naming ``where`` when a key of ``kinds`` present in ``document`` (absent or null
    keys are left to their defaults) has a value not of its kind."""
    for name, kind in kinds.items():
        value = document.get(name)
        problem = None if value is None else wrong(name, value, kind)
        if problem:
            raise Unreadable(f"{where}: {problem}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
