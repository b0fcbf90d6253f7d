"""The user-mistake exception. The CLI prints it as one line and exits 1; any other exception is a bug and keeps its
traceback, so a bug never looks like a user mistake."""

from __future__ import annotations


class UserError(ValueError):
    """What the user asked for cannot be done as asked; the message is one line naming the bad value and what would
    be right. A ``ValueError`` so that callers of the Python API can catch it the usual way."""


class DataError(RuntimeError):
    """The data cannot be read as its manifest describes (a truncated shard, too many corrupt samples); one line
    naming the shard or the count, pointing at ``densenet-ray data verify``."""


class RunFailed(RuntimeError):
    """A training run failed inside Ray (a worker's exception, a worker that died); the message is one line with
    the cause and where the full traceback was saved."""


class Interrupted(KeyboardInterrupt):
    """A run or sweep stopped by Ctrl+C after saving its state; the message says how to resume it. A
    ``KeyboardInterrupt``, so Python code that stops on Ctrl+C stops on it; the CLI prints it and exits 130."""
