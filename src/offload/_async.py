"""Async tasks: coroutines run on one event loop thread owned by the runner.

A worker calls the task's function as usual; when that returns a coroutine
(an ``async def`` task, or ``submit(async_fn)``), the worker hands it to the
runner's loop and waits for its outcome, so retries, timeouts, hooks and
records are exactly those of a plain task. There is one loop per runner,
started on the first coroutine and stopped at shutdown: no ``asyncio.run`` per
task, and coroutines of many tasks interleave on that loop while their
workers wait (the pool still bounds how many run at once).

The coroutine runs in a copy of the task's ``contextvars`` context. Its
``timeout`` is a timer in the runner's scheduler (``TIMER_CORO``, so the fake
clock drives it) that cancels the coroutine on the loop (the clean asyncio
way), not an exception raised into the worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Coroutine
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from ._clock import SYSTEM_CLOCK
from ._errors import TaskTimeoutError
from ._flow import cancel_requested
from ._handle import TaskCancelledError
from ._log import runner_log
from ._timers import TIMER_CORO, push_timer

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._runner import Runner

# Seconds a worker waits past a coroutine's timeout for the loop to report it,
# in case the loop itself is blocked by synchronous code in some coroutine.
_LOOP_GRACE = 5.0


class LoopThread:
    """An asyncio event loop running forever in its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"{name}-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Stopped at shutdown: cancel what is left (drain timeout passed) and let it unwind.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.thread is not threading.current_thread():
                self.thread.join(timeout)


def loop_for(runner: Runner) -> LoopThread:
    """The runner's loop thread, started on first use."""
    with runner._lock:
        loop = runner._flow_state.loop
        if loop is None:
            loop = runner._flow_state.loop = LoopThread(runner.name)
        return loop  # type: ignore[no-any-return]


def stop_loop(runner: Runner, timeout: float = 5.0) -> None:
    """Stop the runner's loop thread, if it was started (at the end of shutdown)."""
    loop = runner._flow_state.loop
    if loop is not None:
        loop.stop(timeout)


class _Attempt:
    """One coroutine attempt running on the loop; cancellable from any thread.

    The worker waits on ``future``, which completes only once the asyncio task
    has finished, so a cancelled or timed-out coroutine has unwound (its
    ``finally`` blocks ran) before the attempt is recorded or retried.
    """

    __slots__ = ("cancel_asked", "future", "loop", "task", "timed_out")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.task: asyncio.Task[Any] | None = None
        self.cancel_asked = False
        self.timed_out = False  # set by the runner's timer (``TIMER_CORO``)

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """On the loop: run the coroutine as a task (in the context this callback runs in)."""
        if self.cancel_asked:
            coro.close()
            self.future.set_exception(concurrent.futures.CancelledError())
            return
        self.task = task = self.loop.create_task(coro)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self.future.set_exception(concurrent.futures.CancelledError())
        elif task.exception() is not None:
            self.future.set_exception(task.exception())
        else:
            self.future.set_result(task.result())

    def cancel(self) -> None:
        """From any thread: cancel the coroutine (``CancelledError`` at its next await)."""
        self.loop.call_soon_threadsafe(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.cancel_asked = True


def run_coroutine(
    runner: Runner, handle: TaskHandle, coro: Coroutine[Any, Any, Any], started: float
) -> tuple[BaseException | None, Any]:
    """Run ``coro`` on the runner's loop; return ``(exception, result)`` of the attempt.

    ``started``: when the attempt started (runner clock); its timeout counts from it
    and is served by the runner's scheduler (so a ``FakeClock`` drives it too).
    """
    timeout = None if runner._eager else handle._options.timeout
    loop = loop_for(runner).loop
    attempt = _Attempt(loop)
    ctx = handle._ctx
    # The task copies the context its start callback runs in: a copy of the task's own.
    context = copy_context() if ctx is None else ctx.run(copy_context)
    coroutines = runner._flow_state.coroutines
    with runner._lock:
        coroutines[handle.id] = attempt  # so that cancel() and the timeout can reach it
        if cancel_requested(handle):  # cancel() came while the function was being called
            attempt.cancel_asked = True
        if timeout is not None:
            push_timer(runner, started + timeout, TIMER_CORO, handle)
    try:
        loop.call_soon_threadsafe(attempt.start, coro, context=context)
    except RuntimeError as exc:  # the loop was closed: the runner shut down under this attempt
        coro.close()
        with runner._lock:
            coroutines.pop(handle.id, None)
        return exc, None
    # A safety net for a loop blocked by synchronous code (real time only: a fake
    # clock's timeout may be hours away in real terms).
    wait = None if timeout is None or runner._clock is not SYSTEM_CLOCK else timeout + _LOOP_GRACE
    try:
        result = attempt.future.result(wait)
    except concurrent.futures.CancelledError:
        if attempt.timed_out:
            return _timeout_error(handle, timeout or 0.0), None
        return TaskCancelledError(f"task {handle.name} (id {handle.id}) was cancelled while running"), None
    except concurrent.futures.TimeoutError:
        attempt.cancel()
        runner_log.error(
            "task %s (id %s): its event loop did not report within %gs of the timeout; "
            "is a coroutine blocking the loop with synchronous code?",
            handle.name,
            handle.id,
            _LOOP_GRACE,
        )
        return _timeout_error(handle, timeout or 0.0), None
    except BaseException as exc:
        return exc, None
    finally:
        with runner._lock:
            coroutines.pop(handle.id, None)
            if timeout is not None and not attempt.timed_out:
                runner._stale_timers += 1  # its timeout timer will find nothing to do
    return None, result


def _timeout_error(handle: TaskHandle, timeout: float) -> TaskTimeoutError:
    return TaskTimeoutError(
        f"task {handle.name} (id {handle.id}) attempt {handle.attempts} "
        f"exceeded its timeout of {timeout:g}s; its coroutine was cancelled"
    )


def in_running_loop() -> bool:
    """True if the calling thread runs an asyncio event loop (where blocking is not allowed)."""
    module = sys.modules.get("asyncio")
    if module is None:
        return False
    try:
        module.get_running_loop()
    except RuntimeError:
        return False
    return True
