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
from heapq import heappop, heappush
from typing import TYPE_CHECKING

from ._errors import TaskTimeoutError
from ._handle import State, TaskHandle
from ._interrupt import raise_in_thread
from ._log import runner_log
from ._workers import ABANDONED, INTERRUPTED, NOT_INTERRUPTED, TIMER_ABANDON, TIMER_RUN, TIMER_TIMEOUT

if TYPE_CHECKING:
    from ._runner import Runner

_RUNNING = State.RUNNING
_WAITING = (State.SCHEDULED, State.RETRYING)


class TimersMixin:
    """The scheduler side of :class:`~offload.Runner`."""

    def _push_timer(self: Runner, due: float, kind: int, handle: TaskHandle) -> None:
        """Add a timer; the runner lock is held by the caller."""
        entry = (due, next(self._timer_seq), kind, handle, handle.attempts)
        heappush(self._timers, entry)
        if self._timer_thread is None:
            self._timer_thread = thread = threading.Thread(
                target=self._timer_loop, name=f"{self.name}-scheduler", daemon=True
            )
            thread.start()
        elif self._timers[0] is entry:
            self._timer_cond.notify()

    def _timer_loop(self: Runner) -> None:
        clock = self._clock
        timers = self._timers
        with self._lock:
            while not self._timer_stop:
                if timers and timers[0][0] <= clock.monotonic():
                    _, _, kind, handle, attempt = heappop(timers)
                    if kind == TIMER_RUN:
                        self._due_locked(handle)
                    elif kind == TIMER_TIMEOUT:
                        self._timeout_locked(handle, attempt)
                    elif kind == TIMER_ABANDON:
                        self._abandon_locked(handle, attempt)
                    continue
                clock.wait(self._timer_cond, timers[0][0] if timers else None)

    def _due_locked(self: Runner, handle: TaskHandle) -> None:
        """A scheduled task or a retry is due: move it to the ready queue."""
        state = handle.state
        if state not in _WAITING:
            return  # cancelled or dropped meanwhile
        if state is State.SCHEDULED:
            self._n_scheduled -= 1
        else:
            self._n_retrying -= 1
        handle.next_attempt_at = None
        self._make_ready_locked(handle)

    def _timeout_locked(self: Runner, handle: TaskHandle, attempt: int) -> None:
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
        self._push_timer(self._clock.monotonic() + self.settings.abandon_timeout, TIMER_ABANDON, handle)

    def _abandon_locked(self: Runner, handle: TaskHandle, attempt: int) -> None:
        """The interrupted attempt did not stop within the grace period: give up on its thread."""
        if handle.attempts != attempt or handle._attempt_done or handle._interrupted != INTERRUPTED:
            return
        handle._interrupted = ABANDONED
        self._abandoned += 1
        self._abandoned_alive += 1
        for thread in list(self._threads):
            if thread.ident == handle._thread_ident:
                self._threads.discard(thread)
        self._n_threads -= 1
        replaced = self._abandoned_alive <= self.settings.abandon_cap
        runner_log.error(
            "task %s (id %s) attempt %d did not stop %gs after its timeout (stuck in a C call?); "
            "its thread is abandoned%s",
            handle.name,
            handle.id,
            attempt,
            self.settings.abandon_timeout,
            " and replaced" if replaced else f" and NOT replaced: {self._abandoned_alive} abandoned threads "
            f"exceed max_abandoned={self.settings.abandon_cap}, capacity is reduced",
        )
        if self._n_queued:
            self._spawn_locked()
        timeout = handle._options.timeout or 0.0
        exc = TaskTimeoutError(
            f"task {handle.name} (id {handle.id}) attempt {attempt} exceeded its timeout of {timeout:g}s "
            "and did not stop; its thread was abandoned"
        )
        self._lock.release()
        try:
            self._attempt_finished(handle, None, exc, timeout + self.settings.abandon_timeout)
        finally:
            self._lock.acquire()
