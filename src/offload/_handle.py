"""TaskHandle: what ``submit``/``delay`` return, and the unit of work itself.

One object per task on purpose: the handle is also the queue entry the workers
run, so an enqueue allocates one object, not three. Once the task finishes the
handle lets go of the function, its arguments and its context, so a handle kept
in the bounded history holds only its outcome (a failed task keeps its function
and arguments, so that it can be inspected and retried).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from contextvars import Context
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._errors import OffloadError

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import TaskOptions


class State(str, enum.Enum):
    """Where a task is in its life.

    ``QUEUED -> RUNNING -> SUCCEEDED | FAILED``, with ``SCHEDULED`` (waiting for its
    ``countdown``/``eta``), ``RETRYING`` (an attempt failed, the next one waits for
    its backoff), ``PENDING`` (enqueued inside a database transaction, queued when
    it commits; see the Django integration), ``CANCELLED`` (cancelled before it
    started, dropped at shutdown, or its transaction rolled back), ``EXPIRED``
    (not started before its ``expires`` time, so never run) and, in journal mode,
    ``INTERRUPTED`` (an ``at_most_once`` task whose process died while it ran). The value is the
    lower-case name, handy in JSON and logs.
    """

    PENDING = "pending"
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """True for the three final states."""
        return self in _FINISHED


_FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED, State.INTERRUPTED})


class TaskCancelledError(OffloadError, CancelledError):
    """Raised by ``result()``/``exception()`` of a task that was cancelled or dropped."""


class TaskExpiredError(TaskCancelledError):
    """Raised by ``result()``/``exception()`` of a task that expired before it started.

    A subclass of :class:`TaskCancelledError`: code that handles "this task will
    never run" handles both.
    """


# Their public names, as for the errors in _errors.py.
TaskCancelledError.__module__ = TaskExpiredError.__module__ = "offload"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What is recorded about an exception: text only, never the object or its frames.

    Attributes:
        type: the exception's class path, e.g. ``"builtins.ValueError"``.
        message: ``str(exc)``.
        traceback: the formatted traceback text.
    """

    type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """What is recorded about one attempt of a task, for monitoring.

    Attributes:
        number: the attempt's number, from 1.
        started_at: wall-clock start (seconds since the epoch).
        finished_at: wall-clock end.
        duration: seconds the attempt ran (monotonic clock).
        outcome: ``"succeeded"``, ``"retrying"`` (failed, another attempt follows)
            or ``"failed"`` (failed, no attempt follows).
        error: the exception it raised, or ``None``.
    """

    number: int
    started_at: float
    finished_at: float
    duration: float
    outcome: str
    error: ErrorInfo | None


#: Attempts kept per handle: the first one and the most recent ones.
MAX_ATTEMPT_RECORDS = 20

# Waiters and callbacks registered on handles that have no runner lock to use.
_DETACHED_LOCK = threading.Lock()


class TaskHandle:
    """A submitted task: its state, its attempts and, once done, its outcome.

    Mirrors :class:`concurrent.futures.Future` (``result``, ``exception``,
    ``cancel``, ``done``, ``add_done_callback``) and adds what a task queue shows:
    ``id``, ``name``, ``state``, ``attempts`` and the recorded ``error``.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_attempt_done",
        "_attempt_log",
        "_callbacks",
        "_ctx",
        "_event",
        "_exc",
        "_flow",
        "_fn",
        "_interrupted",
        "_kwargs",
        "_lock",
        "_options",
        "_result",
        "_runner",
        "_thread_ident",
        "attempts",
        "cancel_reason",
        "created_at",
        "error",
        "finished_at",
        "id",
        "name",
        "next_attempt_at",
        "priority",
        "queue",
        "started_at",
        "state",
    )

    id: str
    name: str
    queue: str
    priority: int
    state: State
    attempts: int
    error: ErrorInfo | None
    cancel_reason: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None

    def __init__(
        self,
        id: str,
        name: str,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        runner: Runner | None,
        created_at: float,
        priority: int,
        ctx: Context | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._options = options
        self._runner = runner
        self._ctx = ctx
        self._lock = lock if lock is not None else _DETACHED_LOCK
        self.queue = options.queue
        self.priority = priority
        self.state = State.QUEUED
        self.attempts = 0
        self.error = None
        self.cancel_reason = None
        self.created_at = created_at
        self.started_at = None
        self.finished_at = None
        self.next_attempt_at = None
        self._result: Any = None
        self._exc: BaseException | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[TaskHandle], object]] | None = None
        self._thread_ident: int | None = None
        self._attempt_done = True
        self._attempt_log: list[tuple[int, float, float, str, ErrorInfo | None]] | None = None
        self._interrupted = 0  # see _timers.py: NOT_INTERRUPTED, INTERRUPTED, ABANDONED
        self._flow: Any = None  # a _flow.Flow for tasks with context, limits, uniqueness or expiry

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name} id={self.id} state={self.state.value} attempts={self.attempts}>"

    # -- state ------------------------------------------------------------

    def done(self) -> bool:
        """True once the task succeeded, failed or was cancelled."""
        return self.state in _FINISHED

    def cancelled(self) -> bool:
        """True if the task was cancelled (or dropped at shutdown)."""
        return self.state is State.CANCELLED

    def running(self) -> bool:
        """True while an attempt is executing."""
        return self.state is State.RUNNING

    @property
    def created(self) -> datetime:
        """When the task was accepted, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.created_at, timezone.utc)

    @property
    def attempt_records(self) -> tuple[Attempt, ...]:
        """The recorded attempts, oldest first: the first and the most recent ones.

        At most ``MAX_ATTEMPT_RECORDS`` are kept (``attempts`` still counts them all).
        """
        log = self._attempt_log
        if not log:
            started, finished = self.started_at, self.finished_at
            if self.state is State.SUCCEEDED and started is not None and finished is not None:
                # succeeded at its first attempt: not logged (the hot path), the handle's own times
                return (Attempt(self.attempts, started, finished, finished - started, "succeeded", None),)
            return ()
        return tuple(
            Attempt(number, finished_at - duration, finished_at, duration, outcome, error)
            for number, finished_at, duration, outcome, error in list(log)
        )

    def _record_attempt(self, finished_at: float, duration: float, outcome: str, error: ErrorInfo | None) -> None:
        """Append this attempt's record (runner lock held); cheap: one tuple."""
        entry = (self.attempts, finished_at, duration, outcome, error)
        log = self._attempt_log
        if log is None:
            self._attempt_log = [entry]
            return
        log.append(entry)
        if len(log) > MAX_ATTEMPT_RECORDS:
            del log[1]  # keep the first attempt: it shows how the trouble began

    # -- waiting ----------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task is done or ``timeout`` seconds pass; return ``done()``."""
        _check_timeout(timeout, "wait")
        return self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        if self.state in _FINISHED:
            return True
        with self._lock:
            if self.state in _FINISHED:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        event.wait(timeout)
        return self.state in _FINISHED

    def result(self, timeout: float | None = None) -> Any:
        """Return the task's return value, waiting up to ``timeout`` seconds.

        Raises:
            TimeoutError: the task is not done within ``timeout``.
            TaskCancelledError: the task was cancelled or dropped at shutdown.
            Exception: the task's own exception, re-raised unchanged.
        """
        _check_timeout(timeout, "result")
        if not self._wait(timeout):
            raise TimeoutError(f"task {self.name} (id {self.id}) not done after {timeout}s; state {self.state.value}")
        if self.state is State.CANCELLED or self.state is State.EXPIRED:
            raise self._cancelled_error()
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the exception the task failed with, or ``None`` if it succeeded.

        Raises:
            TimeoutError: the task is not done within ``timeout``.
            TaskCancelledError: the task was cancelled or dropped at shutdown.
        """
        _check_timeout(timeout, "exception")
        if not self._wait(timeout):
            raise TimeoutError(f"task {self.name} (id {self.id}) not done after {timeout}s; state {self.state.value}")
        if self.state is State.CANCELLED or self.state is State.EXPIRED:
            raise self._cancelled_error()
        return self._exc

    def _cancelled_error(self) -> TaskCancelledError:
        if self.state is State.EXPIRED:
            return TaskExpiredError(f"task {self.name} (id {self.id}) expired before it started: {self.cancel_reason}")
        reason = self.cancel_reason or "cancelled"
        return TaskCancelledError(f"task {self.name} (id {self.id}) was {reason}")

    def cancel(self) -> bool:
        """Cancel the task unless an attempt is running or it has finished.

        A task can be cancelled while pending, queued, scheduled, or waiting between
        two attempts for its retry. A running attempt is never interrupted; instead
        its ``context.cancelled`` event is set (tasks declared with ``bind=True``
        or a ``context`` parameter can check it and stop early), and it gets no
        further retries.

        Returns:
            True if the task is now cancelled (also if it already was), False if it
            is running (cancellation requested) or finished.
        """
        if self.state is State.CANCELLED:
            return True
        if self._runner is None:
            return False
        return self._runner._cancel(self, "cancelled")

    def add_done_callback(self, fn: Callable[[TaskHandle], object]) -> None:
        """Call ``fn(handle)`` when the task is done (at once if it already is).

        Callbacks run in the thread that finishes the task. One that raises is
        logged on the ``offload.runner`` logger and does not affect the task or others.
        """
        if not callable(fn):
            raise TypeError(f"add_done_callback() of task {self.name}: expected a callable, got {fn!r}")
        with self._lock:
            if self.state not in _FINISHED:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _call_callback(self, fn)

    # -- finishing (called by the runner) ----------------------------------

    def _settle(self) -> None:
        """Wake waiters and run callbacks; the caller has set the final state."""
        with self._lock:
            event, callbacks = self._event, self._callbacks
            self._callbacks = None
        self._wake(event, callbacks)

    def _wake(self, event: threading.Event | None, callbacks: list[Callable[[TaskHandle], object]] | None) -> None:
        """Set the waiters' event and run the done callbacks (taken under the lock)."""
        if event is not None:
            event.set()
        if callbacks:
            for fn in callbacks:
                _call_callback(self, fn)


def _call_callback(handle: TaskHandle, fn: Callable[[TaskHandle], object]) -> None:
    try:
        fn(handle)
    except Exception:
        from ._log import runner_log

        runner_log.exception("done callback %r of task %s (id %s) raised", fn, handle.name, handle.id)


def _check_timeout(timeout: float | None, what: str) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what}(timeout=...) must be seconds as a number or None, got {timeout!r}")
    if not timeout >= 0:
        raise ValueError(f"{what}(timeout=...) must be >= 0 seconds, got {timeout!r}")
    if timeout > threading.TIMEOUT_MAX:
        raise ValueError(f"{what}(timeout=...) must be at most {threading.TIMEOUT_MAX:g} seconds, got {timeout!r}")
