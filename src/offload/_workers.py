"""Worker threads: take a task, run one attempt, record the outcome.

Part of :class:`offload.Runner`; split out because this is the hot path and the
part with the subtle concurrency (timeouts raised into the running thread).
Everything here runs with the runner's state described in ``_runner.py``.
"""

from __future__ import annotations

import logging
import threading
import traceback
import types
from collections.abc import Callable
from functools import partial
from queue import Empty
from typing import TYPE_CHECKING, Any

from ._errors import NotRunError, RetriesExhaustedError, Retry, TaskTimeoutError
from ._flow import attempt_ended_locked, may_start_locked
from ._handle import ErrorInfo, State, TaskHandle
from ._interrupt import Interrupt, clear_in_thread
from ._log import runner_log, task_log
from ._policy import retry_delay
from ._timers import INTERRUPTED, NOT_INTERRUPTED, TIMER_RUN, TIMER_TIMEOUT, push_timer

if TYPE_CHECKING:
    from ._runner import Runner

_QUEUED = State.QUEUED
_RUNNING = State.RUNNING
_SUCCEEDED = State.SUCCEEDED
_FAILED = State.FAILED

# Put into the token queue once per worker to make it exit.
STOP = object()

# run_attempt's answer when the runner gave up on this thread during the attempt.
ABANDONED_THREAD = object()

# A successful attempt not recorded yet: the arguments of finish().
Done = tuple[TaskHandle, State, Any, "BaseException | None", float]

# Tells a thread which runner it works for (used to refuse blocking admission
# from inside a worker, which could deadlock the pool).
worker_local = threading.local()


_debug = partial(task_log.isEnabledFor, logging.DEBUG)


def error_info(exc: BaseException) -> ErrorInfo:
    """Text record of an exception: class path, message, formatted traceback."""
    cls = type(exc)
    return ErrorInfo(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


def call(handle: TaskHandle) -> Any:
    """Call the task's function with its arguments, in the context captured at enqueue."""
    ctx = handle._ctx
    if ctx is None:
        return handle._fn(*handle._args, **handle._kwargs)  # type: ignore[misc]
    return ctx.run(handle._fn, *handle._args, **handle._kwargs)  # type: ignore[arg-type]


def from_task_frame(exc: BaseException) -> BaseException:
    """Start the traceback at the task's own frame: the worker's frame above it is noise
    in every log line, record and dashboard (failures only, so the cost is off the hot path)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return exc if tb is None else exc.with_traceback(tb)


def _clear_frames(exc: BaseException | None) -> None:
    # Keep the traceback's lines (so result() re-raises with them) but drop the
    # frames' local variables, which can hold large objects for a long time.
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


# -- the loop -------------------------------------------------------


def worker_loop(runner: Runner) -> None:
    """Serve the ready queue until told to stop, idle too long, or abandoned."""
    try:
        _serve(runner)
    finally:
        if runner._hooks.on_thread_exit:
            runner._hooks.fire("on_thread_exit", runner)


def _serve(runner: Runner) -> None:
    """The loop of :func:`worker_loop`.

    A successful attempt is recorded in the same critical section that takes
    the next task (``done``), so a busy worker takes the runner lock once per
    task; before it blocks for more work it records it on its own.
    """
    worker_local.runner = runner
    tokens = runner._tokens
    lock = runner._lock
    pop = runner._ready.pop
    ident = threading.get_ident()
    idle_timeout = runner.settings.idle_timeout
    done: Done | None = None
    try:
        while True:
            try:
                token = tokens.get_nowait()
                was_idle = False
            except Empty:
                if done is not None:
                    finish(runner, *done)
                    done = None
                with lock:
                    runner._idle += 1
                try:
                    token = tokens.get(timeout=idle_timeout)
                except Empty:
                    with lock:
                        runner._idle -= 1
                        if runner._n_queued and runner._state is not runner._CLOSED:
                            continue
                        _thread_exits_locked(runner)
                    return
                was_idle = True
            handle: TaskHandle | None = None
            with lock:
                woken = None if done is None else record_locked(runner, *done, runner._wall())
                if was_idle:
                    runner._idle -= 1
                if token is STOP:
                    _thread_exits_locked(runner)
                else:
                    handle = pop()
                    if (
                        handle is not None
                        and handle.state is _QUEUED
                        and (handle._flow is None or may_start_locked(runner, handle))
                    ):
                        handle.state = _RUNNING
                        runner._n_queued -= 1
                        runner._n_running += 1
                        if runner._blocked:
                            runner._space.notify()
                    else:
                        # dropped at shutdown, cancelled while queued, over a limit
                        # (parked) or past its expiry (its timer marks it)
                        handle = None
            if done is not None:
                done[0]._wake(*woken)  # type: ignore[misc]
                done = None
            if token is STOP:
                return
            if handle is not None:
                outcome = run_attempt(runner, handle, ident)
                if outcome is ABANDONED_THREAD:
                    return  # a replacement took this thread's place
                done = outcome  # type: ignore[assignment]
    except BaseException:  # pragma: no cover - a bug in offload itself
        runner_log.critical("offload worker thread crashed", exc_info=True)
        with lock:
            _thread_exits_locked(runner)
        raise


def _thread_exits_locked(runner: Runner) -> None:
    runner._n_threads -= 1
    runner._threads.discard(threading.current_thread())
    runner._thread_exit.notify_all()


# -- one attempt ----------------------------------------------------


def run_attempt(runner: Runner, handle: TaskHandle, ident: int) -> Done | object | None:
    """Run the next attempt of a RUNNING handle.

    Returns ``ABANDONED_THREAD`` if this thread was given up on meanwhile, the
    arguments of :func:`finish` for a plain success (the caller records it), or
    None once the outcome is fully recorded.
    """
    now = runner._now
    handle.attempts += 1
    handle._thread_ident = ident
    if handle.started_at is None:
        handle.started_at = runner._wall()
    hooks = runner._hooks
    if hooks.before_attempt:
        hooks.fire("before_attempt", handle)
    timeout = handle._options.timeout
    started = now()
    result: Any = None
    exc: BaseException | None = None
    if timeout is None or runner._eager:
        try:
            result = call(handle)
        except BaseException as e:
            exc = from_task_frame(e)
    else:
        attempt = handle.attempts
        exc, result, abandoned = run_watched(runner, handle, ident, started + timeout)
        if abandoned:
            abandoned_thread_returned(runner, handle, attempt, now() - started)
            return ABANDONED_THREAD
        if handle._interrupted == INTERRUPTED:
            timeout_exc = TaskTimeoutError(
                f"task {handle.name} (id {handle.id}) attempt {handle.attempts} "
                f"exceeded its timeout of {timeout:g}s and was interrupted"
            )
            exc = timeout_exc.with_traceback(exc.__traceback__ if exc is not None else None)
    duration = now() - started
    if exc is None and type(result) is types.CoroutineType:
        from ._async import run_coroutine  # imports asyncio: only once a coroutine shows up

        exc, result = run_coroutine(runner, handle, result, started)
    if exc is None and not hooks.after_attempt and not _debug():
        # The common case, without the detour: the caller records the success in the
        # critical section that takes its next task (after_success fires first, as below).
        if hooks.after_success:
            hooks.fire("after_success", handle, result)
        return (handle, _SUCCEEDED, result, None, duration)
    attempt_finished(runner, handle, result, exc, duration)
    return None


def run_watched(
    runner: Runner, handle: TaskHandle, ident: int, deadline: float
) -> tuple[BaseException | None, Any, bool]:
    """Run the function with a timeout timer armed; see ``_timers.py`` for the other side.

    Returns the exception, the result, and whether this thread was abandoned
    meanwhile (then the handle may already be on a later attempt: hands off).
    """
    lock = runner._lock
    with lock:
        handle._attempt_done = False
        handle._interrupted = NOT_INTERRUPTED
        push_timer(runner, deadline, TIMER_TIMEOUT, handle)
    result: Any = None
    exc: BaseException | None = None
    try:
        try:
            result = call(handle)
        except BaseException as e:
            exc = from_task_frame(e)
        finally:
            abandoned, interrupted = _attempt_returned(runner, handle, ident)
            if interrupted:
                # The timer fired: an Interrupt may still be pending for this
                # thread. Clear it before it lands in offload's own code.
                clear_in_thread(ident)
    except Interrupt as e:  # delivered between the call's return and the clear
        exc = e
        abandoned, _ = _attempt_returned(runner, handle, ident)
    return exc, result, abandoned


def _attempt_returned(runner: Runner, handle: TaskHandle, ident: int) -> tuple[bool, bool]:
    """Mark the watched attempt done; return (abandoned, interrupted). Idempotent."""
    with runner._lock:
        if ident in runner._abandoned_idents:  # dropped by abandoned_thread_returned()
            return True, True
        if handle._attempt_done:
            return False, False  # second call, after an Interrupt landed in the first
        handle._attempt_done = True
        runner._stale_timers += 1  # its timeout timer, unless it fired
        return False, handle._interrupted != NOT_INTERRUPTED


def abandoned_thread_returned(runner: Runner, handle: TaskHandle, attempt: int, ran_for: float) -> None:
    runner_log.warning(
        "abandoned attempt %d of task %s (id %s) returned after %.1fs; its outcome is discarded and the thread exits",
        attempt,
        handle.name,
        handle.id,
        ran_for,
    )
    with runner._lock:
        runner._abandoned_idents.discard(threading.get_ident())
        runner._abandoned_changed_locked(-1)
        runner._threads.discard(threading.current_thread())
        runner._thread_exit.notify_all()
        if runner._n_queued > runner._idle:
            runner._spawn_locked()  # capacity lost past max_abandoned is back


# -- outcomes -------------------------------------------------------


def attempt_finished(
    runner: Runner, handle: TaskHandle, result: Any, exc: BaseException | None, duration: float
) -> None:
    """Record an attempt's outcome: success, retry or failure."""
    hooks = runner._hooks
    if hooks.after_attempt:
        hooks.fire("after_attempt", handle, exc)  # paired with before_attempt, even for an attempt not run
    if isinstance(exc, NotRunError):
        not_run(runner, handle, str(exc))
        return
    if exc is None:
        if _debug():
            task_log.debug(
                "task %s (id %s) succeeded in %.3fs",
                handle.name,
                handle.id,
                duration,
                extra=_extra(handle, duration, "succeeded"),
            )
        if hooks.after_success:
            hooks.fire("after_success", handle, result)
        finish(runner, handle, _SUCCEEDED, result, None, duration)
        return
    delay = retry_delay(runner, handle, exc)
    if delay is None:
        fail(runner, handle, exc, duration)
    else:
        schedule_retry(runner, handle, exc, delay, duration)


def schedule_retry(runner: Runner, handle: TaskHandle, exc: BaseException, delay: float, duration: float) -> None:
    options = handle._options
    explicit = isinstance(exc, Retry)
    task_log.log(
        20 if explicit else 30,
        "task %s (id %s) attempt %d %s; retry %d of %d in %.2fs",
        handle.name,
        handle.id,
        handle.attempts,
        f"asked for a retry ({exc})" if explicit else f"failed: {type(exc).__name__}: {exc}",
        handle.attempts,
        options.retries,
        delay,
        exc_info=None if explicit else exc,
        extra=_extra(handle, duration, "retrying", exc, delay),
    )
    handle.next_attempt_at = runner._wall() + delay
    if retry_later(runner, handle, delay, duration, error_info(exc)) and runner._hooks.after_retry_scheduled:
        runner._hooks.fire("after_retry_scheduled", handle, exc, delay)
    _clear_frames(exc)


def fail(runner: Runner, handle: TaskHandle, exc: BaseException, duration: float) -> None:
    if isinstance(exc, Retry):
        exhausted = RetriesExhaustedError(
            f"task {handle.name} (id {handle.id}) raised Retry on attempt {handle.attempts} "
            f"but has no retries left (retries={handle._options.retries})"
        )
        exhausted.__cause__ = exc.exc if exc.exc is not None else exc
        exc = exhausted
    handle.error = error_info(exc)
    task_log.error(
        "task %s (id %s) failed on attempt %d: %s: %s",
        handle.name,
        handle.id,
        handle.attempts,
        type(exc).__name__,
        exc,
        exc_info=exc,
        extra=_extra(handle, duration, "failed", exc),
    )
    if runner._hooks.after_failure:
        runner._hooks.fire("after_failure", handle, exc)
    _clear_frames(exc)
    finish(runner, handle, _FAILED, None, exc, duration)


def not_run(runner: Runner, handle: TaskHandle, reason: str) -> None:
    """The attempt found it must not run (see ``NotRunError``): the task ends CANCELLED, uncounted as an attempt."""
    with runner._lock:
        handle.attempts -= 1
        runner._n_running -= 1
        if handle._flow is not None:
            attempt_ended_locked(runner, handle)
        runner._end_cancelled_locked(handle, reason)
    runner_log.warning("task %s (id %s) not run: %s", handle.name, handle.id, reason)
    handle._settle()


def finish(
    runner: Runner, handle: TaskHandle, state: State, result: Any, exc: BaseException | None, duration: float
) -> None:
    """Record that a started task SUCCEEDED or FAILED, then wake its waiters."""
    finished_at = runner._wall()
    with runner._lock:
        woken = record_locked(runner, handle, state, result, exc, duration, finished_at)
    handle._wake(*woken)


def record_locked(
    runner: Runner,
    handle: TaskHandle,
    state: State,
    result: Any,
    exc: BaseException | None,
    duration: float,
    finished_at: float,
) -> tuple[threading.Event | None, list[Callable[[TaskHandle], object]] | None]:
    """The one place a started task's final outcome is set (lock held).

    Returns the waiters' event and the done callbacks, to be woken by the
    caller once the lock is released.
    """
    handle.state = state
    handle._result = result
    handle._exc = exc
    handle.finished_at = finished_at
    if handle._attempt_log is not None or state is not _SUCCEEDED:
        # A first-attempt success is not logged: attempt_records reads it off the handle
        # (this runs under the runner lock, for every task).
        handle._record_attempt(finished_at, duration, state.value, handle.error if state is _FAILED else None)
    runner._durations.append(duration)
    runner._n_running -= 1
    if handle._flow is not None:
        attempt_ended_locked(runner, handle)
    if state is _SUCCEEDED:
        runner._succeeded += 1
    else:
        runner._failed += 1
        runner._failed_attempts += 1
    runner._retire(handle)
    event, callbacks = handle._event, handle._callbacks
    handle._callbacks = None
    return event, callbacks


def retry_later(runner: Runner, handle: TaskHandle, delay: float, duration: float, error: ErrorInfo) -> bool:
    """Put a task that failed an attempt back, ``delay`` seconds from now; False if dropped."""
    finished_at = runner._wall()
    with runner._lock:
        handle._record_attempt(finished_at, duration, "retrying", error)
        runner._durations.append(duration)
        runner._n_running -= 1
        if handle._flow is not None:
            attempt_ended_locked(runner, handle)
        runner._retries += 1
        runner._failed_attempts += 1
        handle.state = State.RETRYING
        runner._n_retrying += 1
        due = runner._now() + delay
        dropped = runner._state is runner._CLOSED or (runner._state is runner._CLOSING and due > runner._drain_deadline)
        if dropped:
            runner._drop_locked(handle, "dropped at shutdown: its retry was due after the drain deadline")
        elif not runner._eager:  # eager mode loops in the caller instead
            push_timer(runner, due, TIMER_RUN, handle)
    if dropped:
        runner_log.warning("shutdown: dropped retry of task %s (id %s)", handle.name, handle.id)
        handle._settle()
    return not dropped


# -- eager mode -----------------------------------------------------


def run_eagerly(runner: Runner, handle: TaskHandle) -> None:
    """Run every attempt now, in the caller's thread; backoff delays are not slept."""
    with runner._lock:
        handle.state = _RUNNING
        runner._n_running += 1
        runner._submitted += 1
        runner._active[handle.id] = handle
    ident = threading.get_ident()
    while True:
        outcome = run_attempt(runner, handle, ident)
        if isinstance(outcome, tuple):
            finish(runner, *outcome)
        with runner._lock:
            if handle.state is not State.RETRYING:
                return
            handle.state = _RUNNING
            runner._n_retrying -= 1
            runner._n_running += 1


def _extra(
    handle: TaskHandle,
    duration: float,
    outcome: str,
    exc: BaseException | None = None,
    retry_delay: float | None = None,
) -> dict[str, Any]:
    """The ``extra`` fields of an attempt's log line (picked up by JSON formatters and structlog)."""
    cls = None if exc is None else type(exc)
    return {
        "task_name": handle.name,
        "task_id": handle.id,
        "task_queue": handle.queue,
        "attempt": handle.attempts,
        "duration": duration,
        "outcome": outcome,
        "error_type": None if cls is None else f"{cls.__module__}.{cls.__qualname__}",
        "retry_delay": retry_delay,
    }
