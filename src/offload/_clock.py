"""Time, injectable.

Every delay offload computes (countdown, backoff, timeouts, drains) reads the
runner's clock, and every timed wait goes through :meth:`Clock.wait`, so that a
test can swap in :class:`offload.testing.FakeClock` and step time by hand.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """The real clock: ``time.monotonic`` for delays, ``time.time`` for timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; used for every delay."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds since the epoch; used only for timestamps shown to people."""
        return time.time()

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        """Block on ``cond`` (held by the caller) until notified or ``deadline``.

        ``deadline`` is a :meth:`monotonic` reading; ``None`` waits for a notify.
        Spurious wake-ups are allowed: callers re-check their own state.
        """
        if deadline is None:
            cond.wait()
        else:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                cond.wait(min(remaining, threading.TIMEOUT_MAX))


SYSTEM_CLOCK = Clock()
