"""Task ids: a random per-process prefix and a counter (~0.2 us, vs ~2 us for uuid4)."""

from __future__ import annotations

import itertools
import os


def _new_prefix() -> str:
    return os.urandom(8).hex()


_id_prefix = _new_prefix()
_id_counter = itertools.count(1)


def reseed_after_fork() -> None:
    """Draw a new prefix in a forked child, so parent and child never share an id."""
    global _id_prefix, _id_counter
    _id_prefix = _new_prefix()
    _id_counter = itertools.count(1)


def new_task_id() -> str:
    """A 32-hex-digit id unique across processes (the prefix is re-drawn after fork)."""
    return f"{_id_prefix}{next(_id_counter):016x}"
