"""Admission: what ``submit``/``delay`` do in the caller's thread, up to the ready queue.

Validation, the handle, hooks and deferral (Django's on-commit), the journal
write, then the ready queue or the scheduler's heap, with room checked against
``queue_size``. Functions of the runner, bound as its methods in ``_runner.py`` (no extra
call on the hot path); they use its state under the runner's lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import copy_context
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _deferral
from . import _validate as check
from ._errors import PayloadError, QueueFullError, RunnerClosedError
from ._flow import admit_locked, attach, duplicate_locked
from ._handle import State, TaskHandle
from ._ids import new_task_id
from ._payload import check_request_bound
from ._shutdown import register_exit_drain
from ._task import PRIORITY_MAX, PRIORITY_MIN, Task, callable_name
from ._timers import TIMER_RUN, push_timer
from ._workers import run_eagerly, worker_local

if TYPE_CHECKING:
    from ._runner import Runner

_PENDING = State.PENDING
_QUEUED = State.QUEUED
_SCHEDULED = State.SCHEDULED


def submit(runner: Runner, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskHandle:
    """Run ``fn(*args, **kwargs)`` in the background; return its handle at once.

    ``fn`` may be a plain callable (run once, no retries) or a declared
    :func:`~offload.task`, which keeps its retries, timeout and priority.

    Raises:
        PayloadError: ``fn`` is not callable or an argument is request-bound.
        QueueFullError: ``queue_size`` tasks are waiting already.
        RunnerClosedError: the runner is shutting down.
    """
    return runner._enqueue(fn, args, kwargs)


def enqueue(
    runner: Runner,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    countdown: float | None = None,
    eta: datetime | None = None,
    priority: int | None = None,
    name: str | None = None,
    expires: float | datetime | None = None,
    task_id: str | None = None,
) -> TaskHandle:
    if isinstance(target, Task):
        options = target.options
        fn = target.fn
        name = options.name
    else:
        if not callable(target):
            raise PayloadError(f"submit(): the function to run must be callable, got {target!r}")
        options = runner._plain_options
        fn = target
        name = callable_name(target) if name is None else check.name("offload.Thread", "name", name)
    if args or kwargs:
        check_request_bound(name, args, kwargs, runner._journal is not None)
    delay = 0.0 if countdown is None and eta is None else check.delay(f"task {name!r}", countdown, eta, runner._wall())
    if priority is None:
        priority = options.priority
    else:
        check.integer(f"task {name!r}", "priority", priority, minimum=PRIORITY_MIN, maximum=PRIORITY_MAX)
    handle = TaskHandle(
        new_task_id() if task_id is None else task_id,
        name,
        fn,
        args,
        kwargs,
        options,
        runner,
        runner._wall(),
        priority,
        copy_context(),
        runner._lock,
    )
    if options.flow or expires is not None:
        attach(runner, handle, options, delay, expires)
        # Lock-free look first, so before_enqueue hooks do not see a duplicate.
        existing = duplicate_locked(runner, handle)
        if existing is not None:
            return existing
    if runner._hooks.before_enqueue:
        runner._hooks.fire("before_enqueue", handle)
    if _deferral.current is not None and _deferral.defer(runner, _deferral.current, handle, delay):
        return handle
    if runner._plain:
        return runner._queue(handle, delay)
    return runner._admit(handle, delay)


def admit(runner: Runner, handle: TaskHandle, delay: float) -> TaskHandle:
    """Accept a new or PENDING task: run it (eager), journal it, and queue or schedule it.

    Returns the handle, or the existing one of a unique twin already queued.
    """
    if runner._eager:
        runner._check_open(handle)
        if handle.state is _PENDING:
            with runner._lock:
                runner._n_pending -= 1
        run_eagerly(runner, handle)
        return handle
    if runner._journal is None:
        return runner._queue(handle, delay)
    if not runner._workers_max:  # enqueue only: `offload worker` runs it
        runner._check_open(handle)
        runner._journal.enqueue(handle, delay)
        return handle
    runner._journal.enqueue(handle, delay)  # on disk first; undone below if refused
    try:
        queued = runner._queue(handle, delay)
    except BaseException:
        runner._journal.forget(handle)
        raise
    if queued is not handle:  # a unique twin got in first: this row must not run after a restart
        runner._journal.forget(handle)
    return queued


def queue(runner: Runner, handle: TaskHandle, delay: float, *, wait_for_room: bool = True) -> TaskHandle:
    """Make a handle wait for its time or a worker (QueueFullError if no room)."""
    spawn = False
    with runner._lock:
        if runner._state is not runner._RUNNING:
            runner._open_locked(handle)
        if handle._flow is not None:
            existing = duplicate_locked(runner, handle)
            if existing is not None:
                if handle.state is _PENDING:  # let go at commit, but a unique twin got in first
                    runner._drop_locked(handle, f"not queued: task {existing.id} has the same unique key")
                return existing
        if wait_for_room and runner._n_queued + runner._n_scheduled + runner._n_retrying >= runner._queue_size:
            runner._wait_for_room_locked(handle)
        if handle.state is _PENDING:
            runner._n_pending -= 1
            handle.state = _QUEUED
        runner._submitted += 1
        runner._active[handle.id] = handle
        if handle._flow is not None:
            admit_locked(runner, handle)
        if delay > 0.0:
            handle.state = _SCHEDULED
            handle.next_attempt_at = handle.created_at + delay
            runner._n_scheduled += 1
            push_timer(runner, runner._now() + delay, TIMER_RUN, handle)
            return handle
        runner._ready.push(handle)
        runner._n_queued += 1
        if runner._n_queued > runner._idle and runner._n_threads < runner._max_threads:
            runner._n_threads += 1
            spawn = True
    runner._tokens.put(None)
    if spawn:
        runner._start_worker()
    return handle


def check_open(runner: Runner, handle: TaskHandle) -> None:
    with runner._lock:
        if runner._state is not runner._RUNNING:
            runner._open_locked(handle)


def open_locked(runner: Runner, handle: TaskHandle) -> None:
    if runner._state is runner._NEW:
        runner._state = runner._RUNNING
        register_exit_drain()
        return
    raise RunnerClosedError(f"task {handle.name}: runner {runner.name!r} is {runner._state} and accepts no new tasks")


def wait_for_room_locked(runner: Runner, handle: TaskHandle) -> None:
    size = runner.settings.queue_size
    message = f"task {handle.name}: the queue is full ({size} tasks waiting, queue_size={size})"
    if runner.settings.on_full == "raise":
        raise QueueFullError(message + "; retry later, raise queue_size, or use on_full='block'")
    if getattr(worker_local, "runner", None) is runner:
        raise QueueFullError(message + "; a task may not block waiting for room in its own runner (deadlock)")
    from ._async import in_running_loop

    if in_running_loop():
        raise QueueFullError(message + "; enqueueing from async code never blocks the event loop")
    timeout = runner.settings.block_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    runner._blocked += 1
    try:
        while runner._n_queued + runner._n_scheduled + runner._n_retrying >= size:
            if runner._state is not runner._RUNNING:
                raise RunnerClosedError(f"task {handle.name}: runner {runner.name!r} closed while waiting for room")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(message + f"; still full after block_timeout={timeout:g}s")
            runner._space.wait(remaining)
    finally:
        runner._blocked -= 1
