"""Arguments as display text, with secret-looking keyword values masked.

A task's arguments are shown on its detail page; a password or an API key
passed by keyword must not be. Masking goes by name (``password``, ``api_key``,
``token``...), at the top level of ``kwargs`` and in nested dicts with string
keys, and the text of every value is bounded by :mod:`reprlib`.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MASK = "********"

SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|cookie|session|private|signature", re.IGNORECASE)

_MAX_DEPTH = 4
_MAX_ITEMS = 100

_repr = reprlib.Repr()
_repr.maxstring = 300
_repr.maxother = 300
_repr.maxlong = 100
_repr.maxlevel = _MAX_DEPTH + 1
for _attr in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_repr, _attr, 20)


def is_secret(name: str) -> bool:
    """True if a keyword or dict key looks like it holds a secret."""
    return bool(SECRET_NAME.search(name))


def _masked(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and is_secret(k) else _masked(v, depth + 1)
            for k, v in list(value.items())[:_MAX_ITEMS]
        }
    if isinstance(value, (list, tuple)):
        items = [_masked(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def show(value: Any) -> str:
    """Bounded ``repr`` of a value, secrets in nested dicts masked; never raises."""
    try:
        return _repr.repr(_masked(value, 0))
    except Exception as exc:  # a broken __repr__ must not break the page
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def show_args(args: tuple[Any, ...]) -> list[str]:
    """Display text of each positional argument."""
    return [show(value) for value in args[:_MAX_ITEMS]]


def show_kwargs(kwargs: dict[str, Any]) -> dict[str, str]:
    """Display text of each keyword argument; secret-looking names are masked."""
    return {name: MASK if is_secret(name) else show(value) for name, value in list(kwargs.items())[:_MAX_ITEMS]}
