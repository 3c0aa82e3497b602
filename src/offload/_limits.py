"""Rate and concurrency limits per task name, enforced without holding a worker.

A task over its limit is *parked*: a worker that pops it from the ready queue
puts it on its limiter's FIFO instead of running it, and goes back for other
work. Parked tasks stay ``QUEUED`` (they count in ``stats().queued`` and in the
admission bound). They return to the ready queue when a token is due (the
scheduler thread wakes the limiter, see ``TIMER_LIMIT``) or when an attempt of
the same task ends and frees a concurrency slot. So nothing spins, nothing is
dropped and no worker thread sleeps on a limit.

Rate limits are token buckets refilled continuously at ``count / period``.
The bucket holds :data:`BURST_SECONDS` worth of tokens (at least one): a slow
rate like ``"10/s"`` spaces starts evenly (one per 100 ms, as Celery does), while
a fast one like ``"2000/s"`` absorbs the scheduler's wake-up jitter instead of
losing the tokens that accrued while it overslept.

Everything here runs with the runner lock held (``*_locked``).
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._handle import State, TaskHandle

if TYPE_CHECKING:
    from ._runner import Runner

# Seconds of tokens a bucket can hold: the largest burst after an idle spell.
BURST_SECONDS = 0.01

# Tolerance on token counts: refills are float sums, and 0.1 s at 10/s must
# give a whole token, not 0.9999999999999999 of one.
_EPSILON = 1e-9

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """A parsed ``rate_limit``: ``count`` starts per ``period`` seconds."""

    count: float
    period: float
    text: str

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_second * BURST_SECONDS)


def parse_rate(owner: str, value: Any) -> Rate | None:
    """Parse ``"10/s"``, ``"100/m"``, ``"1000/h"``, ``"5/d"`` or ``"1/10s"``; ``None`` passes."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{owner}: rate_limit must be a string like '10/s', '100/m' or '1000/h', got {value!r}"
        )
    match = _RATE.match(value)
    if match is None:
        raise ConfigurationError(
            f"{owner}: rate_limit must look like '10/s', '100/m', '1000/h' or '1/10s' (count/period), got {value!r}"
        )
    count = float(match.group(1))
    multiple = int(match.group(2)) if match.group(2) else 1
    if count <= 0 or multiple <= 0 or math.isinf(count):
        raise ConfigurationError(
            f"{owner}: rate_limit must allow at least some tasks (count and period > 0), got {value!r}"
        )
    return Rate(count=count, period=multiple * _PERIODS[match.group(3)], text=value)


class Limiter:
    """The bucket, the running count and the parked FIFO of one task name in one runner."""

    __slots__ = ("capacity", "concurrency", "fill_rate", "name", "parked", "running", "stamp", "tokens", "wakeup_at")

    def __init__(self, name: str, rate: Rate | None, concurrency: int | None, now: float) -> None:
        self.name = name
        self.fill_rate = rate.per_second if rate is not None else 0.0
        self.capacity = rate.capacity if rate is not None else 0.0
        self.tokens = self.capacity
        self.stamp = now
        self.concurrency = concurrency
        self.running = 0
        self.parked: deque[TaskHandle] = deque()
        self.wakeup_at: float | None = None

    def refill(self, now: float) -> None:
        if self.fill_rate:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.fill_rate)
        self.stamp = now

    def available(self, now: float) -> int:
        """How many parked tasks could start now."""
        free = math.inf if self.concurrency is None else self.concurrency - self.running
        if self.fill_rate:
            self.refill(now)
            free = min(free, math.floor(self.tokens + _EPSILON))
        return int(min(free, len(self.parked)))


def limiter_for(runner: Runner, handle: TaskHandle) -> Limiter:
    limiters = runner._flow_state.limiters
    limiter = limiters.get(handle.name)
    if limiter is None:
        options = handle._options
        limiter = limiters[handle.name] = Limiter(handle.name, options.rate_limit, options.concurrency, runner._now())
    return limiter


def try_start_locked(runner: Runner, handle: TaskHandle, released: bool) -> bool:
    """Take a token and a slot for ``handle``, or park it and return False."""
    limiter = limiter_for(runner, handle)
    if limiter.parked and not released:
        limiter.parked.append(handle)  # others wait already: keep FIFO order
        return False
    if limiter.concurrency is not None and limiter.running >= limiter.concurrency:
        _park(limiter, handle, released)
        return False  # an attempt that ends releases it
    if limiter.fill_rate:
        now = runner._now()
        limiter.refill(now)
        if limiter.tokens < 1.0 - _EPSILON:
            _park(limiter, handle, released)
            _wake_when_due_locked(runner, limiter, handle, now)
            return False
        limiter.tokens = max(0.0, limiter.tokens - 1.0)
        if limiter.parked and limiter.wakeup_at is None:
            _wake_when_due_locked(runner, limiter, limiter.parked[0], now)  # for the next in line
    if limiter.concurrency is not None:
        limiter.running += 1
        handle._flow.holds_slot = True
    return True


def _park(limiter: Limiter, handle: TaskHandle, released: bool) -> None:
    # A released task that lost its turn (another took the token) goes back to the front.
    if released:
        limiter.parked.appendleft(handle)
    else:
        limiter.parked.append(handle)


def _wake_when_due_locked(runner: Runner, limiter: Limiter, handle: TaskHandle, now: float) -> None:
    due = now + max(0.0, 1.0 - limiter.tokens) / limiter.fill_rate
    if limiter.wakeup_at is not None and limiter.wakeup_at <= due:
        return  # a wake-up at least as early is pending
    limiter.wakeup_at = due
    from ._timers import TIMER_LIMIT, push_timer

    push_timer(runner, due, TIMER_LIMIT, handle)


def wake_locked(runner: Runner, handle: TaskHandle) -> None:
    """The scheduler's ``TIMER_LIMIT`` fired: release what the bucket allows now."""
    limiter = runner._flow_state.limiters.get(handle.name)
    if limiter is None:
        return
    now = runner._now()
    if limiter.wakeup_at is not None and limiter.wakeup_at > now:
        return  # superseded by an earlier wake-up that already ran; a later one is pending
    limiter.wakeup_at = None
    release_locked(runner, limiter)


def attempt_ended_locked(runner: Runner, handle: TaskHandle) -> None:
    """An attempt holding a concurrency slot ended: free it and release the next parked task."""
    flow = handle._flow
    if not flow.holds_slot:
        return
    flow.holds_slot = False
    limiter = runner._flow_state.limiters[handle.name]
    limiter.running -= 1
    if limiter.parked:
        release_locked(runner, limiter)


def release_locked(runner: Runner, limiter: Limiter) -> None:
    """Move as many parked tasks back to the ready queue as may start now."""
    parked = limiter.parked
    # Drop entries of tasks cancelled or expired while parked.
    while parked and parked[0].state is not State.QUEUED:
        parked.popleft()
    now = runner._now()
    count = limiter.available(now)
    while count > 0 and parked:
        handle = parked.popleft()
        if handle.state is not State.QUEUED:
            continue
        handle._flow.released = True
        runner._ready.push(handle)
        runner._tokens.put(None)
        count -= 1
        if runner._idle == 0:
            runner._spawn_locked()
    if parked and limiter.fill_rate and limiter.wakeup_at is None and limiter.tokens < 1.0 - _EPSILON:
        _wake_when_due_locked(runner, limiter, parked[0], now)


def parked_handles(runner: Runner) -> list[TaskHandle]:
    """Every parked task still queued (for shutdown), removing them from their limiters."""
    handles: list[TaskHandle] = []
    for limiter in runner._flow_state.limiters.values():
        handles.extend(h for h in limiter.parked if h.state is State.QUEUED)
        limiter.parked.clear()
    return handles
