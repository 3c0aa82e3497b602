"""Parsing the task-list filters from a query string, with errors that say what was wrong."""

from __future__ import annotations

import math
from datetime import datetime

from .._handle import State
from ._http import HTTPError
from ._model import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, TaskQuery

_STATES = ", ".join(s.value for s in State)


def _int(query: dict[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise HTTPError(400, f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def parse_time(name: str, raw: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time with a timezone."""
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise HTTPError(400, f"{name} must be a finite time, got {raw!r}")
        return value
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"{name} must be seconds since the epoch or an ISO 8601 time, got {raw!r}") from None
    if moment.tzinfo is None:
        raise HTTPError(400, f"{name} must include a timezone (e.g. 2026-01-01T12:00:00Z), got {raw!r}")
    return moment.timestamp()


def task_query(query: dict[str, str]) -> TaskQuery:
    """Build a :class:`TaskQuery` from ``state, name, queue, since, until, offset, limit``."""
    state = None
    raw_state = query.get("state", "")
    if raw_state:
        try:
            state = State(raw_state)
        except ValueError:
            raise HTTPError(400, f"state must be one of {_STATES}, got {raw_state!r}") from None
    since = query.get("since", "")
    until = query.get("until", "")
    return TaskQuery(
        state=state,
        name=query.get("name") or None,
        queue=query.get("queue") or None,
        since=parse_time("since", since) if since else None,
        until=parse_time("until", until) if until else None,
        offset=_int(query, "offset", 0, 0, 10**9),
        limit=_int(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )
