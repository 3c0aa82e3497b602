"""Async tasks: coroutines run on one event loop thread owned by the runner.

A worker calls the task's function as usual; when that returns a coroutine
(an ``async def`` task, or ``submit(async_fn)``), the worker hands it to the
runner's loop and waits for its outcome, so retries, timeouts, hooks and
records are exactly those of a plain task. There is one loop per runner,
started on the first coroutine and stopped at shutdown: no ``asyncio.run`` per
task, and coroutines of many tasks interleave on that loop while their
workers wait (the pool still bounds how many run at once).

The coroutine runs in a copy of the task's ``contextvars`` context. Its
``timeout`` is enforced on the loop by cancelling the coroutine (the clean
asyncio way), not by raising into the worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ._errors import TaskTimeoutError
from ._flow import cancel_requested
from ._handle import TaskCancelledError
from ._log import runner_log

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


def run_coroutine(
    runner: Runner, handle: TaskHandle, coro: Coroutine[Any, Any, Any], elapsed: float
) -> tuple[BaseException | None, Any]:
    """Run ``coro`` on the runner's loop; return ``(exception, result)`` of the attempt.

    ``elapsed``: seconds the attempt already used (counted against its timeout).
    """
    timeout = None if runner._eager else handle._options.timeout
    remaining = None if timeout is None else max(0.0, timeout - elapsed)
    loop = loop_for(runner).loop
    driver = _drive(coro, remaining, handle, timeout)
    ctx = handle._ctx
    # Scheduled from inside the task's context, so the loop's Task copies it.
    if ctx is None:
        future = asyncio.run_coroutine_threadsafe(driver, loop)
    else:
        future = ctx.run(asyncio.run_coroutine_threadsafe, driver, loop)
    coroutines = runner._flow_state.coroutines
    with runner._lock:
        coroutines[handle.id] = future  # so that cancel() can cancel it
        if cancel_requested(handle):  # cancel() came while the function was being called
            future.cancel()
    try:
        result = future.result(None if remaining is None else remaining + _LOOP_GRACE)
    except concurrent.futures.CancelledError:
        return TaskCancelledError(f"task {handle.name} (id {handle.id}) was cancelled while running"), None
    except concurrent.futures.TimeoutError:
        future.cancel()
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
    return None, result


async def _drive(
    coro: Coroutine[Any, Any, Any], remaining: float | None, handle: TaskHandle, timeout: float | None
) -> Any:
    if remaining is None:
        return await coro
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=remaining)
    if not done:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # it raised while being cancelled: the timeout is what happened
            pass
        raise _timeout_error(handle, timeout or 0.0)
    return task.result()


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
