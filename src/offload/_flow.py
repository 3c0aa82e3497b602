"""Flow control around the core runner: task context, expiry, unique tasks,
cooperative cancel, and the hand-off to rate/concurrency limits (``_limits.py``).

A task that uses none of these costs nothing: its handle's ``_flow`` stays
``None`` and the runner's hot paths test only that. A task that uses any of
them gets one small :class:`Flow` object at enqueue, and the runner calls in here
at a few points:

- ``_enqueue``: :func:`attach` (no lock: validation, the unique key, the expiry
  time); ``_queue``: :func:`attach_recovered` for tasks recovered from the journal,
  then, under the lock, :func:`duplicate_locked` and :func:`admit_locked` (the
  unique index, the expiry timer);
- the worker's pop: :func:`may_start_locked` (expiry, limits, binding the context);
- the end of an attempt: :func:`attempt_ended_locked` (frees a concurrency slot);
- ``cancel()`` of a running task: :func:`request_cancel_locked`;
- ``_retire``: :func:`retired_locked` (leaves the unique index, passes on a
  promised token or slot, lets go of the Flow);
- the scheduler: :func:`expire_locked` and :func:`coroutine_timeout_locked`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _validate as check
from ._context import TaskContext
from ._errors import ConfigurationError, EnqueueError
from ._handle import State, TaskHandle
from ._limits import Limiter, release_locked, try_start_locked
from ._limits import attempt_ended_locked as _limits_attempt_ended
from ._log import runner_log as log

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import TaskOptions

_QUEUED = State.QUEUED


class Flow:
    """Per-task flow-control state (only for tasks that need it)."""

    __slots__ = ("bound", "cancel_requested", "context", "expires_at", "holds_slot", "key", "limited", "released")

    def __init__(self) -> None:
        self.bound = False  # the context is bound into handle._fn (done when it first starts)
        self.cancel_requested = False  # cancel() was called while an attempt ran
        self.context: TaskContext | None = None
        self.key: Any = None
        self.expires_at: float | None = None  # runner monotonic time
        self.limited = False
        self.released = False  # came back from a limiter's parked FIFO
        self.holds_slot = False  # counts in its limiter's running attempts


class FlowState:
    """Per-runner flow-control state: limiters, the unique index, counters."""

    __slots__ = ("coroutines", "expired", "limiters", "loop", "unique")

    def __init__(self) -> None:
        self.coroutines: dict[str, Any] = {}  # task id -> its running coroutine (an _async._Attempt)
        self.limiters: dict[str, Limiter] = {}
        self.unique: dict[Any, TaskHandle] = {}
        self.expired = 0
        self.loop: Any = None  # the runner's event loop thread (``_async.py``), started lazily


# -- declaration ------------------------------------------------------------


def takes_context(fn: Callable[..., Any]) -> bool:
    """True if the function's first parameter is named ``context`` (``django.tasks`` spelling)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return (
        bool(parameters)
        and parameters[0].name == "context"
        and parameters[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    )


def check_unique_key(owner: str, unique: Any, unique_key: Any) -> Callable[..., Any] | None:
    """Validate ``unique``/``unique_key``; return the key function (or None)."""
    check.flag(owner, "unique", unique)
    if unique_key is not None and not callable(unique_key):
        raise ConfigurationError(f"{owner}: unique_key must be a function of the task's arguments, got {unique_key!r}")
    if unique_key is not None:
        return unique_key  # type: ignore[no-any-return]
    return _default_key if unique else None


def _default_key(*args: Any, **kwargs: Any) -> Any:
    # repr, not the values: arguments are often lists and dicts (unhashable).
    return (repr(args), repr(sorted(kwargs.items())))


# -- enqueue ------------------------------------------------------------------


def attach(
    runner: Runner,
    handle: TaskHandle,
    options: TaskOptions,
    delay: float,
    expires: float | datetime | None,
) -> None:
    """Give ``handle`` its Flow: context argument, unique key, expiry time.

    Raises:
        EnqueueError: the unique key function raised or returned an unhashable key.
        ConfigurationError: ``expires`` is invalid or not after the start time.
    """
    flow = attach_recovered(handle, options)
    if runner._eager:
        bind_context(handle)  # eager attempts run inline, without the worker's pop
    if options.unique_key is not None:
        flow.key = unique_key(handle, options)
    if expires is not None:
        flow.expires_at = runner._now() + expires_in(runner, handle.name, expires, delay)


def attach_recovered(handle: TaskHandle, options: TaskOptions) -> Flow:
    """The Flow of a task from the journal (or the base of :func:`attach`): context and limits.

    Runs no user code, so the runner may call it for tasks it did not enqueue itself.
    Uniqueness and expiry are not in the journal: recovered tasks have neither.
    """
    flow = handle._flow = Flow()
    if options.bind:
        flow.context = TaskContext(handle, handle.name, options.retries)
    flow.limited = options.rate_limit is not None or options.concurrency is not None
    return flow


def bind_context(handle: TaskHandle) -> None:
    """Bind the context into the function, once, just before the first attempt.

    Bound into the function, not prepended to the arguments: ``_args`` stays what
    the caller passed (journaled, shown by the dashboard, reused by a retry from
    it); and bound late, so that the function it wraps is the one that will run
    (the journal replaces ``_fn`` with its own wrapper at enqueue).
    """
    flow: Flow = handle._flow
    if flow.context is not None and not flow.bound:
        fn = handle._fn
        assert fn is not None
        handle._fn = partial(fn, flow.context)
        flow.bound = True


def unique_key(handle: TaskHandle, options: TaskOptions) -> Any:
    try:
        key = options.unique_key(*handle._args, **handle._kwargs)  # type: ignore[misc]
    except Exception as exc:
        raise EnqueueError(
            f"task {handle.name!r}: unique_key raised {type(exc).__name__}: {exc}; nothing was queued"
        ) from exc
    try:
        hash(key)
    except TypeError as exc:
        raise EnqueueError(f"task {handle.name!r}: unique_key must return a hashable value, got {key!r}") from exc
    return (handle.name, key)


def expires_in(runner: Runner, name: str, expires: float | datetime, delay: float) -> float:
    """Seconds from now until ``expires`` (seconds from now, or an aware datetime)."""
    owner = f"task {name!r}"
    if isinstance(expires, datetime):
        if expires.tzinfo is None or expires.utcoffset() is None:
            raise ConfigurationError(f"{owner}: expires must be timezone-aware, got naive {expires!r}")
        seconds = expires.timestamp() - runner._wall()
        if seconds <= 0:
            raise ConfigurationError(
                f"{owner}: expires is in the past ({expires.isoformat()}); the task could never run"
            )
    else:
        seconds = check.seconds(owner, "expires", expires, zero_ok=False)
    if seconds <= delay:
        raise ConfigurationError(
            f"{owner}: expires ({seconds:g}s from now) must be after the task's start "
            f"(countdown/eta {delay:g}s from now)"
        )
    return seconds


def duplicate_locked(runner: Runner, handle: TaskHandle) -> TaskHandle | None:
    """The queued or running task with the same unique key as ``handle``, if any."""
    flow: Flow | None = handle._flow
    if flow is None or flow.key is None:
        return None
    return runner._flow_state.unique.get(flow.key)


def admit_locked(runner: Runner, handle: TaskHandle) -> None:
    """Under the lock, once the task is accepted: enter the unique index, arm the expiry timer."""
    flow: Flow = handle._flow
    if flow.key is not None:
        runner._flow_state.unique[flow.key] = handle
    if flow.expires_at is not None:
        from ._timers import TIMER_EXPIRE, push_timer

        push_timer(runner, flow.expires_at, TIMER_EXPIRE, handle)


# -- the worker's pop, attempt end, retire -----------------------------------------------


def may_start_locked(runner: Runner, handle: TaskHandle) -> bool:
    """A worker popped this QUEUED task: may it run now? If not it waits (parked or expiring)."""
    flow: Flow = handle._flow
    if flow.expires_at is not None and runner._now() >= flow.expires_at:
        # The expiry timer is due now (or overdue): it marks the task and wakes waiters.
        return False
    if flow.limited:
        released, flow.released = flow.released, False
        if not try_start_locked(runner, handle, released):
            return False
    if flow.context is not None and not flow.bound:
        bind_context(handle)
    return True


def attempt_ended_locked(runner: Runner, handle: TaskHandle) -> None:
    flow: Flow | None = handle._flow
    if flow is not None and flow.holds_slot:
        _limits_attempt_ended(runner, handle)


def retired_locked(runner: Runner, handle: TaskHandle) -> None:
    """The task finished: leave the unique index, let go of the flow state."""
    flow: Flow = handle._flow
    if flow.key is not None and runner._flow_state.unique.get(flow.key) is handle:
        del runner._flow_state.unique[flow.key]
    if flow.released:
        # Released from a limiter's FIFO but finished (cancelled, expired) before a
        # worker took it: the token or slot it was promised goes to the next in line.
        limiter = runner._flow_state.limiters.get(handle.name)
        if limiter is not None and limiter.parked:
            release_locked(runner, limiter)
    if flow.bound and isinstance(handle._fn, partial):
        handle._fn = handle._fn.func  # kept (a failed task): its own function; a retry gets a new context
    if flow.expires_at is not None and handle.state is not State.EXPIRED:
        runner._stale_timers += 1  # its expiry timer will never matter: let compaction drop it
    handle._flow = None  # the history keeps outcomes only (the context stays valid for its holders)


def request_cancel_locked(runner: Runner, handle: TaskHandle) -> None:
    """``cancel()`` of a running task: cooperative, never an interruption.

    No retry follows the attempt; a task with a context sees ``context.cancelled``
    set; a coroutine is cancelled on the loop (``CancelledError`` at its next await).
    """
    flow: Flow | None = handle._flow
    if flow is None:
        flow = handle._flow = Flow()
    flow.cancel_requested = True
    if flow.context is not None:
        flow.context.cancelled.set()
    attempt = runner._flow_state.coroutines.get(handle.id)
    if attempt is not None:
        attempt.cancel()


def coroutine_timeout_locked(runner: Runner, handle: TaskHandle, attempt_number: int) -> None:
    """The scheduler's ``TIMER_CORO`` fired: cancel the coroutine of a timed-out attempt."""
    attempt = runner._flow_state.coroutines.get(handle.id)
    if attempt is None or handle.attempts != attempt_number:
        return  # it finished in time
    attempt.timed_out = True
    log.warning(
        "task %s (id %s) attempt %d exceeded its timeout of %gs; cancelling its coroutine",
        handle.name,
        handle.id,
        attempt_number,
        handle._options.timeout,
    )
    attempt.cancel()


def signal_stop_locked(handle: TaskHandle) -> None:
    """The drain timeout passed with the task still running: set ``context.cancelled``.

    Only the signal: what happens to the attempt's outcome (a retry is dropped,
    the task is then CANCELLED) is the shutdown's business.
    """
    flow: Flow | None = handle._flow
    if flow is not None and flow.context is not None:
        flow.context.cancelled.set()


def cancel_requested(handle: TaskHandle) -> bool:
    flow: Flow | None = handle._flow
    return flow is not None and flow.cancel_requested


# -- expiry ---------------------------------------------------------------------


def expire_locked(runner: Runner, handle: TaskHandle) -> Any:
    """The expiry timer fired: mark a task that has not started EXPIRED.

    Returns what to wake once the lock is released (or None).
    """
    state = handle.state
    if handle.attempts:
        return None  # it started: expiry no longer applies
    if state is _QUEUED:
        runner._n_queued -= 1
    elif state is State.SCHEDULED:
        runner._n_scheduled -= 1
        runner._stale_timers += 1
    else:
        return None
    handle.state = State.EXPIRED
    handle.cancel_reason = "its expires time passed"
    handle.finished_at = runner._wall()
    handle.next_attempt_at = None
    runner._flow_state.expired += 1
    runner._retire(handle)
    if runner._blocked:
        runner._space.notify()
    event, callbacks = handle._event, handle._callbacks
    handle._callbacks = None
    return event, callbacks
