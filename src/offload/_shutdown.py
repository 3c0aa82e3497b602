"""Shutdown: the drain, the log of what was dropped, interpreter exit and fork.

``Runner.shutdown()`` decides *whether* to shut down (once); everything here is
*how*: which waiting tasks are dropped, how long running ones may take, which
threads are joined, and the process-wide hooks that drain every runner before
the interpreter joins threads at exit and reset them in a forked child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

from . import _ids
from . import _validate as check
from ._flow import signal_stop_locked
from ._handle import State, TaskHandle
from ._limits import parked_handles
from ._log import runner_log
from ._timers import TIMER_RUN
from ._workers import STOP, worker_local

if TYPE_CHECKING:
    from ._runner import Runner

# Dropped tasks named per log record, so no single line is huge.
_LOG_CHUNK = 100

# Every runner, to drain them at interpreter exit and to reset them after fork().
runners: weakref.WeakSet[Runner] = weakref.WeakSet()


def check_shutdown_arguments(wait: object, cancel_pending: object, timeout: object) -> float | None:
    """Validate ``shutdown()``'s arguments; return the timeout in seconds (or None)."""
    check.flag("shutdown()", "wait", wait)
    check.flag("shutdown()", "cancel_pending", cancel_pending)
    return check.optional_seconds("shutdown()", "timeout", timeout)


def drop_waiting_locked(runner: Runner, everything: bool) -> list[TaskHandle]:
    """Drop what will not run before the drain deadline (everything, if asked)."""
    dropped = []
    reason = "cancelled at shutdown" if everything else "dropped at shutdown"
    for entry in runner._timers:
        handle = entry[3]
        waiting = entry[2] == TIMER_RUN and handle.state in (State.SCHEDULED, State.RETRYING)
        late = everything or entry[0] > runner._drain_deadline
        if waiting and late and runner._drop_locked(handle, reason):
            dropped.append(handle)
    if everything:
        for handle in [*runner._ready, *parked_handles(runner)]:
            if handle.state is State.QUEUED and runner._drop_locked(handle, reason):
                dropped.append(handle)
    return dropped


def drain_and_close(runner: Runner) -> None:
    """Let work finish until the drain deadline, drop the rest, stop the threads."""
    # shutdown() called from inside a task of this runner: do not wait for that task
    own = 1 if getattr(worker_local, "runner", None) is runner else 0
    with runner._lock:
        while runner._n_queued or runner._n_scheduled or runner._n_retrying or runner._n_running > own:
            if runner._now() >= runner._drain_deadline:
                break
            runner._joiners += 1
            try:
                runner._clock.wait(runner._idle_cond, runner._drain_deadline)
            finally:
                runner._joiners -= 1
        waiting = [*runner._ready.drain(), *parked_handles(runner)]  # parked: over a rate/concurrency limit
        dropped = [h for h in waiting if runner._drop_locked(h, "dropped at shutdown")]
        dropped += drop_waiting_locked(runner, True)
        me = threading.get_ident()
        still_running = [h for h in runner._active.values() if h.state is State.RUNNING and h._thread_ident != me]
        for handle in still_running:
            signal_stop_locked(handle)  # tasks that watch context.cancelled can stop now
        runner._state = runner._CLOSED
        for _ in range(runner._n_threads):
            runner._tokens.put(STOP)
        runner._timer_stop = True
        runner._timer_cond.notify_all()
        busy_idents = {h._thread_ident for h in still_running}
        threads = [t for t in runner._threads if t.ident is not None and t.ident not in busy_idents]
        timer_thread = runner._timer_thread
    log_dropped(runner, dropped, "still queued when the drain timeout passed")
    for handle in dropped:
        handle._settle()
    if still_running:
        runner_log.warning(
            "shutdown: %d task(s) still running after the drain timeout; their threads are left behind: %s",
            len(still_running),
            ", ".join(f"{h.name} (id {h.id})" for h in still_running),
        )
    for thread in threads:
        if thread.ident != me:
            thread.join(timeout=5.0)
    if timer_thread is not None and timer_thread.ident != me:
        timer_thread.join(timeout=5.0)
    if runner._flow_state.loop is not None:  # async tasks ran: stop the runner's event loop
        from ._async import stop_loop

        stop_loop(runner)
    runner._hooks.fire("on_shutdown", runner)
    runner._closed_event.set()


def log_dropped(runner: Runner, dropped: list[TaskHandle], why: str) -> None:
    """Log exactly which tasks were dropped: a count, then every name and id (in chunks).

    With a journal nothing is lost: their rows stay there (released to any
    process at close), so it is said at INFO, not as a loss.
    """
    if not dropped:
        return
    level, label, where = 30, "dropped", ""
    if runner._journal is not None:
        level, label = 20, "left"
        where = f"; their rows stay in journal {runner._journal.store.path or 'store'} for the next start"
    runner_log.log(level, "shutdown: %s %d task(s) %s%s", label, len(dropped), why, where)
    for start in range(0, len(dropped), _LOG_CHUNK):
        chunk = dropped[start : start + _LOG_CHUNK]
        runner_log.log(
            level,
            "shutdown: %s tasks %d-%d of %d: %s",
            label,
            start + 1,
            start + len(chunk),
            len(dropped),
            ", ".join(f"{h.name} (id {h.id})" for h in chunk),
        )


# -- process-wide: interpreter exit and fork ---------------------------------

_exit_registered = False
_exit_lock = threading.Lock()


def register_exit_drain() -> None:
    """Drain every runner before the interpreter joins threads at exit.

    ``threading._register_atexit`` runs before non-daemon threads are joined
    (what ``concurrent.futures`` uses); plain ``atexit`` would run too late.
    """
    global _exit_registered
    with _exit_lock:
        if _exit_registered:
            return
        register = getattr(threading, "_register_atexit", None)
        try:
            if register is not None:
                register(_drain_all_at_exit)
            else:  # pragma: no cover - every supported CPython has it
                import atexit

                atexit.register(_drain_all_at_exit)
        except RuntimeError:
            return  # the interpreter is already shutting down
        _exit_registered = True


def _drain_all_at_exit() -> None:
    from . import _default

    _default.exiting = True
    open_runners = [r for r in list(runners) if not r.closed]
    for runner in open_runners:
        runner.shutdown(wait=False)
    for runner in open_runners:
        runner._closed_event.wait()


def _after_fork_in_child() -> None:
    # Only the forking thread survives fork(): a lock another thread held at that
    # moment would stay locked forever in the child, so every process-wide lock is
    # replaced (what the logging module does for its own locks).
    from . import _default, _hooks, _payload, _task

    global _exit_registered, _exit_lock
    _exit_lock = threading.Lock()
    _default._lock = threading.Lock()
    _hooks._global_lock = threading.Lock()
    for hook_set in list(_hooks._hook_sets):
        hook_set._lock = threading.Lock()
    _payload._verdicts_lock = threading.Lock()
    _task._registry_lock = threading.Lock()
    _ids.reseed_after_fork()
    _exit_registered = False
    for runner in list(runners):
        runner._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
