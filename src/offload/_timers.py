"""The scheduler thread: one heap of timers for everything that happens later.

Delayed tasks (``countdown``/``eta``), retries waiting for their backoff, attempt
timeouts and the grace period before a stuck thread is abandoned are all
entries ``(due, seq, kind, handle, attempt)`` in one heap, served by a single
thread per runner that sleeps until the earliest one (no thread per delayed
task). Entries are never removed early: a stale one (the task was cancelled,
or the attempt it watched has ended) is recognised and skipped when it fires.
"""

from __future__ import annotations

import threading
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING

from ._errors import TaskTimeoutError
from ._flow import coroutine_timeout_locked, expire_locked
from ._handle import State, TaskHandle
from ._interrupt import raise_in_thread
from ._limits import wake_locked
from ._log import runner_log, task_log

if TYPE_CHECKING:
    from ._runner import Runner

# Timer kinds (EXPIRE, LIMIT and CORO are served by _flow.py and _limits.py)
TIMER_RUN, TIMER_TIMEOUT, TIMER_ABANDON, TIMER_EXPIRE, TIMER_LIMIT, TIMER_CORO = 0, 1, 2, 3, 4, 5

# Values of TaskHandle._interrupted
NOT_INTERRUPTED, INTERRUPTED, ABANDONED = 0, 1, 2

_RUNNING = State.RUNNING
_WAITING = (State.SCHEDULED, State.RETRYING)
_NOT_STARTED = (State.QUEUED, State.SCHEDULED)


# Stale entries tolerated before the heap is compacted (and at most half of it).
_COMPACT_AFTER = 1024


def push_timer(runner: Runner, due: float, kind: int, handle: TaskHandle) -> None:
    """Add a timer; the runner lock is held by the caller."""
    if runner._stale_timers > _COMPACT_AFTER and runner._stale_timers * 2 > len(runner._timers):
        _compact(runner)
    entry = (due, next(runner._timer_seq), kind, handle, handle.attempts)
    heappush(runner._timers, entry)
    if runner._timer_thread is None:
        runner._timer_thread = thread = threading.Thread(
            target=timer_loop, args=(runner,), name=f"{runner.name}-scheduler", daemon=True
        )
        thread.start()
    elif runner._timers[0] is entry:
        runner._timer_cond.notify()


def _compact(runner: Runner) -> None:
    """Drop stale entries, so finished timeouts of long-timeout tasks cannot pile up."""
    timers = runner._timers
    timers[:] = [entry for entry in timers if _live(entry[2], entry[3], entry[4])]
    heapify(timers)
    runner._stale_timers = 0


def _live(kind: int, handle: TaskHandle, attempt: int) -> bool:
    if kind == TIMER_LIMIT:
        return True  # one per limiter at most
    if kind == TIMER_EXPIRE:
        return handle.attempts == 0 and handle.state in _NOT_STARTED
    if kind == TIMER_CORO:
        return handle.attempts == attempt and handle.state is _RUNNING
    if handle.attempts != attempt:
        return False
    if kind == TIMER_RUN:
        return handle.state in _WAITING
    return handle.state is _RUNNING and not handle._attempt_done


def timer_loop(runner: Runner) -> None:
    clock = runner._clock
    now = runner._now
    timers = runner._timers
    with runner._lock:
        while not runner._timer_stop:
            if timers and timers[0][0] <= now():
                _, _, kind, handle, attempt = heappop(timers)
                if kind == TIMER_RUN:
                    due_locked(runner, handle)
                elif kind == TIMER_TIMEOUT:
                    timeout_locked(runner, handle, attempt)
                elif kind == TIMER_ABANDON:
                    abandon_locked(runner, handle, attempt)
                elif kind == TIMER_EXPIRE:
                    _expire_locked(runner, handle)
                elif kind == TIMER_LIMIT:
                    wake_locked(runner, handle)
                elif kind == TIMER_CORO:
                    coroutine_timeout_locked(runner, handle, attempt)
                continue
            clock.wait(runner._timer_cond, timers[0][0] if timers else None)


def _expire_locked(runner: Runner, handle: TaskHandle) -> None:
    woken = expire_locked(runner, handle)
    if woken is None:
        return
    task_log.info("task %s (id %s) expired before it started; it will not run", handle.name, handle.id)
    runner._lock.release()  # waiters, callbacks and the journal without the runner lock
    try:
        if runner._journal is not None:  # or it would run after a restart
            runner._journal.cancelled(handle, "expired: its expires time passed before it started")
        handle._wake(*woken)
    finally:
        runner._lock.acquire()


def due_locked(runner: Runner, handle: TaskHandle) -> None:
    """A scheduled task or a retry is due: move it to the ready queue."""
    state = handle.state
    if state not in _WAITING:
        return  # cancelled or dropped meanwhile
    if state is State.SCHEDULED:
        runner._n_scheduled -= 1
    else:
        runner._n_retrying -= 1
    handle.next_attempt_at = None
    runner._make_ready_locked(handle)


def timeout_locked(runner: Runner, handle: TaskHandle, attempt: int) -> None:
    if handle.state is not _RUNNING or handle.attempts != attempt or handle._attempt_done:
        return  # the attempt ended in time
    if handle._interrupted != NOT_INTERRUPTED or handle._thread_ident is None:
        return
    handle._interrupted = INTERRUPTED
    runner_log.warning(
        "task %s (id %s) attempt %d exceeded its timeout of %gs; interrupting it",
        handle.name,
        handle.id,
        attempt,
        handle._options.timeout,
    )
    raise_in_thread(handle._thread_ident)
    push_timer(runner, runner._now() + runner.settings.abandon_timeout, TIMER_ABANDON, handle)


def abandon_locked(runner: Runner, handle: TaskHandle, attempt: int) -> None:
    """The interrupted attempt did not stop within the grace period: give up on its thread."""
    if handle.attempts != attempt or handle._attempt_done or handle._interrupted != INTERRUPTED:
        return
    handle._interrupted = ABANDONED
    # The stuck thread may return during a later attempt of this handle: it knows
    # itself by its ident, not by the handle's fields, which then belong to that attempt.
    if handle._thread_ident is not None:
        runner._abandoned_idents.add(handle._thread_ident)
    if handle._ctx is not None:
        handle._ctx = handle._ctx.copy()  # the stuck thread is still inside the old one
    runner._abandoned += 1
    runner._abandoned_changed_locked(+1)
    for thread in list(runner._threads):
        if thread.ident == handle._thread_ident:
            runner._threads.discard(thread)
    runner._n_threads -= 1
    replaced = runner._abandoned_alive <= runner.settings.abandon_cap
    runner_log.error(
        "task %s (id %s) attempt %d did not stop %gs after its timeout (stuck in a C call?); its thread is abandoned%s",
        handle.name,
        handle.id,
        attempt,
        runner.settings.abandon_timeout,
        " and replaced"
        if replaced
        else f" and NOT replaced: {runner._abandoned_alive} abandoned threads "
        f"exceed max_abandoned={runner.settings.abandon_cap}, capacity is reduced",
    )
    if runner._n_queued:
        runner._spawn_locked()
    timeout = handle._options.timeout or 0.0
    exc = TaskTimeoutError(
        f"task {handle.name} (id {handle.id}) attempt {attempt} exceeded its timeout of {timeout:g}s "
        "and did not stop; its thread was abandoned"
    )
    from ._workers import attempt_finished  # imports this module

    runner._lock.release()
    try:
        attempt_finished(runner, handle, None, exc, timeout + runner.settings.abandon_timeout)
    finally:
        runner._lock.acquire()
