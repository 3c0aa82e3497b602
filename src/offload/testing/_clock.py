"""A clock for tests: it moves only when ``advance()`` is called."""

from __future__ import annotations

import threading

from .._clock import Clock


class FakeClock(Clock):
    """Deterministic time for runners under test.

    Every delay the runner computes (countdown, eta, backoff, task timeouts, the
    drain deadline) reads this clock, and its scheduler thread sleeps in
    :meth:`wait`, which :meth:`advance` wakes. So a test moves time forward by
    exactly as much as it wants, and nothing depends on the machine's speed.

    Args:
        start: the initial :meth:`monotonic` reading.
        wall: the initial :meth:`time` reading (seconds since the epoch).
    """

    def __init__(self, start: float = 0.0, wall: float = 1_767_225_600.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall) - float(start)
        self._lock = threading.Lock()
        self._waiting: set[threading.Condition] = set()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        if deadline is not None and deadline <= self._now:
            return
        with self._lock:
            self._waiting.add(cond)
        try:
            if deadline is not None and deadline <= self._now:  # advanced meanwhile
                return
            # A real timeout only as a safety net: progress comes from advance().
            cond.wait(60.0)
        finally:
            with self._lock:
                self._waiting.discard(cond)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake everything waiting on this clock."""
        if not seconds >= 0:
            raise ValueError(f"FakeClock.advance() takes seconds >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds
            waiting = list(self._waiting)
        for cond in waiting:
            with cond:
                cond.notify_all()

    def __repr__(self) -> str:
        return f"<FakeClock monotonic={self._now:g}>"
