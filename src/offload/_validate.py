"""Eager validation of options: every bad value names its owner, option and value."""

from __future__ import annotations

import math
import threading
from datetime import datetime
from typing import Any

from ._errors import ConfigurationError

#: The longest duration any wait can take (``threading.TIMEOUT_MAX``, about 292 years).
MAX_SECONDS = threading.TIMEOUT_MAX


def optional_seconds(owner: str, option: str, value: Any, *, zero_ok: bool = True) -> float | None:
    """Like :func:`seconds`, but ``None`` is allowed (and returned)."""
    if value is None:
        return None
    return seconds(owner, option, value, zero_ok=zero_ok, none_ok=True)


def seconds(owner: str, option: str, value: Any, *, zero_ok: bool = True, none_ok: bool = False) -> float:
    """Check a duration in float seconds; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        expected = "a number of seconds" + (" or None" if none_ok else "")
        raise ConfigurationError(f"{owner}: {option} must be {expected}, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigurationError(f"{owner}: {option} must be a finite number of seconds {bound}, got {value!r}")
    if value > MAX_SECONDS:
        raise ConfigurationError(f"{owner}: {option} must be at most {MAX_SECONDS:g} seconds, got {value!r}")
    return float(value)


def integer(owner: str, option: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """Check an int within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{owner}: {option} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigurationError(f"{owner}: {option} must be {span}, got {value!r}")
    return value


def choice(owner: str, option: str, value: Any, choices: tuple[str, ...]) -> str:
    """Check a value is one of ``choices``."""
    if value not in choices:
        raise ConfigurationError(f"{owner}: {option} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


def flag(owner: str, option: str, value: Any) -> bool:
    """Check a bool."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{owner}: {option} must be True or False, got {value!r}")
    return value


def exception_types(owner: str, option: str, value: Any) -> tuple[type[BaseException], ...]:
    """Check an exception class or a tuple of them; return a tuple."""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(f"{owner}: {option} must be an exception class or a tuple of them, got {value!r}")
    return items


def name(owner: str, option: str, value: Any) -> str:
    """Check a non-empty, printable name without surrounding spaces."""
    if not isinstance(value, str) or not value or value != value.strip() or not value.isprintable():
        raise ConfigurationError(f"{owner}: {option} must be a non-empty printable string, got {value!r}")
    if len(value) > 200:
        raise ConfigurationError(f"{owner}: {option} must be at most 200 characters, got {len(value)}")
    return value


def delay(owner: str, countdown: object, eta: object, now_wall: float) -> float:
    """Seconds from now until a task given ``countdown`` or ``eta`` may start (0 if the eta passed)."""
    if countdown is not None and eta is not None:
        raise ConfigurationError(f"{owner}: give countdown or eta, not both")
    if countdown is not None:
        return seconds(owner, "countdown", countdown)
    if not isinstance(eta, datetime):
        raise ConfigurationError(f"{owner}: eta must be a datetime, got {eta!r}")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise ConfigurationError(
            f"{owner}: eta must be timezone-aware (e.g. datetime.now(timezone.utc) + ...), got naive {eta!r}"
        )
    until = eta.timestamp() - now_wall
    if until > MAX_SECONDS:
        raise ConfigurationError(f"{owner}: eta is too far in the future ({eta.isoformat()})")
    return max(0.0, until)  # an eta in the past means now
