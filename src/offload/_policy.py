"""The retry decision: whether a failed attempt gets another one, and when.

In order:

1. a task whose cancellation was requested while it ran gets no retry;
2. ``dont_retry_on`` (permanent errors) fail at once, even inside ``retry_on``;
3. no retries left: fail;
4. ``Retry(delay=...)``, or an exception in ``retry_on``: the delay is the one the
   failure asks for (:func:`requested_delay`: a ``retry_after`` attribute, or the
   ``Retry-After`` header of an HTTP 429/503 from ``requests``/``httpx``/``urllib``), capped
   by ``max_backoff``, else the backoff policy;
5. ``retry_deadline``: if the next attempt would start later than that many
   seconds after the first one started, fail now instead.
"""

from __future__ import annotations

import math
import sys
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ._errors import Retry
from ._flow import cancel_requested

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._runner import Runner

# HTTP statuses whose Retry-After header says when to come back.
RETRY_AFTER_STATUSES = frozenset({429, 503})


def retry_delay(runner: Runner, handle: TaskHandle, exc: BaseException) -> float | None:
    """Seconds until the next attempt, or None if the task fails now."""
    options = handle._options
    if handle._flow is not None and cancel_requested(handle):
        return None
    if options.dont_retry_on and isinstance(exc, options.dont_retry_on):
        return None
    if handle.attempts > options.retries:
        return None
    if isinstance(exc, Retry):
        delay = options.retry_delay(handle.attempts) if exc.delay is None else exc.delay
    elif isinstance(exc, options.retry_on):
        asked = requested_delay(exc, runner._wall())
        delay = options.retry_delay(handle.attempts) if asked is None else min(asked, options.max_backoff)
    else:
        return None
    deadline = options.retry_deadline
    started = handle.started_at
    if deadline is not None and started is not None and runner._wall() + delay - started > deadline:
        return None
    return delay


def requested_delay(exc: BaseException, now: float) -> float | None:
    """The delay a failure asks for, in seconds, or None if it does not say.

    Reads ``exc.retry_after`` (seconds), then, for HTTP errors
    (``requests.HTTPError``, ``httpx.HTTPStatusError``, ``urllib.error.HTTPError``),
    the ``Retry-After`` header of a 429 or 503: delta-seconds or an HTTP date.
    """
    seconds = _as_seconds(getattr(exc, "retry_after", None))
    if seconds is not None:
        return seconds
    response = getattr(exc, "response", None)
    if response is not None:  # requests, httpx
        status, headers = getattr(response, "status_code", None), getattr(response, "headers", None)
    elif _is_urllib_http_error(exc):  # the standard library's urlopen()
        status, headers = getattr(exc, "code", None), getattr(exc, "headers", None)
    else:
        return None
    if status not in RETRY_AFTER_STATUSES:
        return None
    try:
        value = headers.get("Retry-After") if headers is not None else None
    except Exception:
        return None
    return parse_retry_after(value, now)


def _is_urllib_http_error(exc: BaseException) -> bool:
    # Not imported here: if urllib.error was never imported, exc cannot be one.
    module = sys.modules.get("urllib.error")
    return module is not None and isinstance(exc, module.HTTPError)


def parse_retry_after(value: Any, now: float) -> float | None:
    """A ``Retry-After`` header value as seconds from ``now``; None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _as_seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return float(value)
