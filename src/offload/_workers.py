"""Worker threads: take a task, run one attempt, record the outcome.

Part of :class:`offload.Runner`; split out because this is the hot path and the
part with the subtle concurrency (timeouts raised into the running thread).
Everything here runs with the runner's state described in ``_runner.py``.
"""

from __future__ import annotations

import threading
import traceback
import types
from heapq import heappop
from queue import Empty
from typing import TYPE_CHECKING, Any

from ._errors import RetriesExhaustedError, Retry, TaskTimeoutError
from ._handle import ErrorInfo, State, TaskHandle
from ._interrupt import Interrupt, clear_in_thread
from ._log import runner_log, task_log

if TYPE_CHECKING:
    from ._runner import Runner

_QUEUED = State.QUEUED
_RUNNING = State.RUNNING
_SUCCEEDED = State.SUCCEEDED
_FAILED = State.FAILED

# Values of TaskHandle._interrupted
NOT_INTERRUPTED, INTERRUPTED, ABANDONED = 0, 1, 2

# Timer kinds, see _timers.py
TIMER_RUN, TIMER_TIMEOUT, TIMER_ABANDON, TIMER_DRAIN = 0, 1, 2, 3

# Put into the token queue once per worker to make it exit.
STOP = object()

# Tells a thread which runner it works for (used to refuse blocking admission
# from inside a worker, which could deadlock the pool).
worker_local = threading.local()


def error_info(exc: BaseException) -> ErrorInfo:
    """Text record of an exception: class path, message, formatted traceback."""
    cls = type(exc)
    return ErrorInfo(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


def _clear_frames(exc: BaseException | None) -> None:
    # Keep the traceback's lines (so result() re-raises with them) but drop the
    # frames' local variables, which can hold large objects for a long time.
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


class WorkersMixin:
    """The worker side of :class:`~offload.Runner`."""

    # -- the loop -------------------------------------------------------

    def _worker_loop(self: Runner) -> None:
        worker_local.runner = self
        tokens = self._tokens
        lock = self._lock
        ready = self._ready
        idle_timeout = self.settings.idle_timeout
        try:
            while True:
                try:
                    token = tokens.get_nowait()
                    was_idle = False
                except Empty:
                    with lock:
                        self._idle += 1
                    try:
                        token = tokens.get(timeout=idle_timeout)
                    except Empty:
                        with lock:
                            self._idle -= 1
                            if self._n_queued and self._state is not self._CLOSED:
                                continue
                            self._n_threads -= 1
                            self._threads.discard(threading.current_thread())
                            self._thread_exit.notify_all()
                        return
                    was_idle = True
                with lock:
                    if was_idle:
                        self._idle -= 1
                    if token is STOP:
                        self._n_threads -= 1
                        self._threads.discard(threading.current_thread())
                        self._thread_exit.notify_all()
                        return
                    if not ready:
                        continue  # its entry was dropped at shutdown
                    handle = heappop(ready)[2]
                    if handle.state is not _QUEUED:
                        continue  # cancelled while queued
                    handle.state = _RUNNING
                    self._n_queued -= 1
                    self._n_running += 1
                    if self._blocked:
                        self._space.notify()
                if not self._run_attempt(handle, threading.get_ident()):
                    return  # this thread was abandoned; a replacement took its place
        except BaseException:  # pragma: no cover - a bug in offload itself
            runner_log.critical("offload worker thread crashed", exc_info=True)
            with lock:
                self._n_threads -= 1
                self._threads.discard(threading.current_thread())
                self._thread_exit.notify_all()
            raise

    # -- one attempt ----------------------------------------------------

    def _run_attempt(self: Runner, handle: TaskHandle, ident: int) -> bool:
        """Run the next attempt of a RUNNING handle; False if the thread was abandoned."""
        options = handle._options
        clock = self._clock
        handle.attempts += 1
        handle._thread_ident = ident
        if handle.started_at is None:
            handle.started_at = clock.time()
        hooks = self._hooks
        if hooks.get("before_attempt"):
            hooks.fire("before_attempt", handle)
        timeout = options.timeout
        started = clock.monotonic()
        result: Any = None
        exc: BaseException | None = None
        if timeout is None or self._eager:
            ctx = handle._ctx
            try:
                if ctx is None:
                    result = handle._fn(*handle._args, **handle._kwargs)  # type: ignore[misc]
                else:
                    result = ctx.run(handle._fn, *handle._args, **handle._kwargs)  # type: ignore[arg-type]
            except BaseException as e:
                exc = e
        else:
            exc, result = self._run_watched(handle, ident, started + timeout)
            if handle._interrupted == ABANDONED:
                self._abandoned_thread_returned(handle, clock.monotonic() - started)
                return False
            if handle._interrupted == INTERRUPTED:
                timeout_exc = TaskTimeoutError(
                    f"task {handle.name} (id {handle.id}) attempt {handle.attempts} "
                    f"exceeded its timeout of {timeout:g}s and was interrupted"
                )
                exc = timeout_exc.with_traceback(exc.__traceback__ if exc is not None else None)
        duration = clock.monotonic() - started
        if exc is None and type(result) is types.CoroutineType:
            result.close()
            exc = TypeError(f"task {handle.name} returned a coroutine; coroutine functions cannot be tasks yet")
        self._attempt_finished(handle, result, exc, duration)
        return True

    def _run_watched(
        self: Runner, handle: TaskHandle, ident: int, deadline: float
    ) -> tuple[BaseException | None, Any]:
        """Run the function with a timeout timer armed; see ``_timers.py`` for the other side."""
        lock = self._lock
        with lock:
            handle._attempt_done = False
            handle._interrupted = NOT_INTERRUPTED
            self._push_timer(deadline, TIMER_TIMEOUT, handle)
        result: Any = None
        exc: BaseException | None = None
        try:
            try:
                ctx = handle._ctx
                if ctx is None:
                    result = handle._fn(*handle._args, **handle._kwargs)  # type: ignore[misc]
                else:
                    result = ctx.run(handle._fn, *handle._args, **handle._kwargs)  # type: ignore[arg-type]
            except BaseException as e:
                exc = e
            finally:
                with lock:
                    handle._attempt_done = True
                    interrupted = handle._interrupted
                if interrupted:
                    # The timer fired: an Interrupt may still be pending for this
                    # thread. Clear it before it lands in offload's own code.
                    clear_in_thread(ident)
        except Interrupt as e:  # delivered between the call's return and the clear
            exc = e
            with lock:
                handle._attempt_done = True
        return exc, result

    def _abandoned_thread_returned(self: Runner, handle: TaskHandle, ran_for: float) -> None:
        runner_log.warning(
            "abandoned attempt %d of task %s (id %s) returned after %.1fs; its outcome is discarded "
            "and the thread exits",
            handle.attempts,
            handle.name,
            handle.id,
            ran_for,
        )
        with self._lock:
            self._abandoned_alive -= 1
            self._threads.discard(threading.current_thread())
            self._thread_exit.notify_all()

    # -- outcomes -------------------------------------------------------

    def _attempt_finished(
        self: Runner, handle: TaskHandle, result: Any, exc: BaseException | None, duration: float
    ) -> None:
        """Record an attempt's outcome: success, retry or failure."""
        hooks = self._hooks
        if hooks.get("after_attempt"):
            hooks.fire("after_attempt", handle, exc)
        self._durations.append(duration)
        if exc is None:
            if task_log.isEnabledFor(10):
                task_log.debug(
                    "task %s (id %s) succeeded in %.3fs",
                    handle.name,
                    handle.id,
                    duration,
                    extra=_extra(handle, duration, "succeeded"),
                )
            if hooks.get("after_success"):
                hooks.fire("after_success", handle, result)
            self._finish(handle, _SUCCEEDED, result, None)
            return
        delay = self._retry_delay(handle, exc)
        if delay is None:
            self._fail(handle, exc, duration)
        else:
            self._schedule_retry(handle, exc, delay, duration)

    def _retry_delay(self: Runner, handle: TaskHandle, exc: BaseException) -> float | None:
        """Seconds until the next attempt, or None if the task fails now."""
        options = handle._options
        if handle.attempts > options.retries:
            return None
        if isinstance(exc, Retry):
            return options.retry_delay(handle.attempts) if exc.delay is None else exc.delay
        if isinstance(exc, options.retry_on):
            return options.retry_delay(handle.attempts)
        return None

    def _schedule_retry(
        self: Runner, handle: TaskHandle, exc: BaseException, delay: float, duration: float
    ) -> None:
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
            extra=_extra(handle, duration, "retrying"),
        )
        handle.next_attempt_at = self._clock.time() + delay
        if self._hooks.get("after_retry_scheduled"):
            self._hooks.fire("after_retry_scheduled", handle, exc, delay)
        _clear_frames(exc)
        self._retry_later(handle, delay)

    def _fail(self: Runner, handle: TaskHandle, exc: BaseException, duration: float) -> None:
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
            extra=_extra(handle, duration, "failed"),
        )
        if self._hooks.get("after_failure"):
            self._hooks.fire("after_failure", handle, exc)
        _clear_frames(exc)
        self._finish(handle, _FAILED, None, exc)

    def _finish(self: Runner, handle: TaskHandle, state: State, result: Any, exc: BaseException | None) -> None:
        """The one place a started task becomes SUCCEEDED or FAILED."""
        finished_at = self._clock.time()
        with self._lock:
            handle.state = state
            handle._result = result
            handle._exc = exc
            handle.finished_at = finished_at
            handle.next_attempt_at = None
            self._n_running -= 1
            if state is _SUCCEEDED:
                self._succeeded += 1
            else:
                self._failed += 1
                self._failed_attempts += 1
            self._retire(handle)
        handle._settle()

    def _retry_later(self: Runner, handle: TaskHandle, delay: float) -> None:
        with self._lock:
            self._n_running -= 1
            self._retries += 1
            self._failed_attempts += 1
            handle.state = State.RETRYING
            self._n_retrying += 1
            due = self._clock.monotonic() + delay
            dropped = self._state is self._CLOSING and due > self._drain_deadline
            if dropped:
                self._drop_locked(handle, "dropped at shutdown: its retry was due after the drain deadline")
            elif not self._eager:  # eager mode loops in the caller instead
                self._push_timer(due, TIMER_RUN, handle)
        if dropped:
            runner_log.warning("shutdown: dropped retry of task %s (id %s)", handle.name, handle.id)
            handle._settle()

    # -- eager mode -----------------------------------------------------

    def _run_eagerly(self: Runner, handle: TaskHandle) -> None:
        """Run every attempt now, in the caller's thread; backoff delays are not slept."""
        with self._lock:
            handle.state = _RUNNING
            self._n_running += 1
            self._submitted += 1
            self._active[handle.id] = handle
        ident = threading.get_ident()
        while True:
            self._run_attempt(handle, ident)
            with self._lock:
                if handle.state is not State.RETRYING:
                    return
                handle.state = _RUNNING
                self._n_retrying -= 1
                self._n_running += 1


def _extra(handle: TaskHandle, duration: float, outcome: str) -> dict[str, Any]:
    return {
        "task_name": handle.name,
        "task_id": handle.id,
        "attempt": handle.attempts,
        "duration": duration,
        "outcome": outcome,
    }

