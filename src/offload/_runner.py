"""Runner: the ready queue, the thread pool and its lifecycle (admission is in ``_admission.py``).

State, all guarded by ``_lock``:

- ``_ready``: the :class:`ReadyQueue` (priority order, FIFO among equals); one
  token per entry is put in ``_tokens`` (a ``SimpleQueue``), which is what idle
  workers block on. Cancelled entries stay in it and are skipped when popped.
- ``_timers``: the scheduler's heap (see ``_timers.py``).
- counters for every current state and totals since creation.
- ``_active`` (id -> handle, unfinished); finished handles go to ``history``, a
  :class:`~offload.journal.MemoryStore` sharing this lock (bounded by ``history=``).

Admission (``submit`` and what ``delay`` calls) is in ``_admission.py``; shutdown
and the process-wide exit/fork hooks are in ``_shutdown.py``.

The request thread's cost is validation, one handle, one heap push and one
token: it never waits on a lock held across user code.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from . import _admission
from . import _validate as check
from ._clock import SYSTEM_CLOCK, Clock
from ._config import RunnerSettings
from ._errors import ConfigurationError, RunnerClosedError
from ._flow import (
    FlowState,
    request_cancel_locked,
    retired_locked,
)
from ._handle import State, TaskHandle, _check_timeout
from ._hooks import HookSet
from ._periodic import start_beat, stop_beat
from ._ready import ReadyQueue
from ._shutdown import (
    check_shutdown_arguments,
    drain_and_close,
    drop_waiting_locked,
    log_dropped,
    register_exit_drain,
    runners,
)
from ._stats import RunnerStats, take_stats
from ._task import TaskOptions
from ._workers import worker_loop
from .journal._memory import MemoryStore
from .journal._runtime import Durable

_PENDING = State.PENDING
_QUEUED = State.QUEUED
_SCHEDULED = State.SCHEDULED
_CANCELLED = State.CANCELLED

# Run times kept for the p50/p99 in stats(): the most recent attempts.
_DURATION_WINDOW = 4096


class Runner:
    """A bounded pool of worker threads that runs tasks with their policies.

    Args:
        workers: most threads running tasks at once; ``min(32, cpu + 4)`` by default.
            Threads start when work arrives and retire after ``idle_timeout``. With a
            journal, 0 means enqueue only: another process (``offload worker``) runs them.
        queue_size: most tasks waiting (queued, scheduled or retrying) at once.
        on_full: ``"raise"`` (``QueueFullError`` at once) or ``"block"`` (wait up to
            ``block_timeout`` seconds for room, then raise).
        block_timeout: seconds ``on_full="block"`` may wait; ``None``: no limit.
        history: finished tasks kept for ``get(id)`` and monitoring.
        drain_timeout: seconds ``shutdown()`` lets work finish before dropping the rest.
        idle_timeout: seconds an idle thread waits for work before it exits.
        abandon_timeout: seconds an attempt past its timeout may take to stop
            before its thread is abandoned and replaced.
        max_abandoned: abandoned threads that get a replacement (default ``workers``);
            past it, capacity shrinks instead of threads piling up.
        eager: run tasks inline in the caller, retries included (for tests).
        journal: keep tasks in a durable journal: a file path (an SQLite journal
            is created there) or a :class:`offload.journal.Store`; see docs/journal.md.
        hooks: :class:`~offload.Hook` objects.
        clock: time source; :class:`offload.testing.FakeClock` in tests.
        name: prefix of the thread names.

    Raises:
        ConfigurationError: an option is invalid.
    """

    _NEW, _RUNNING, _CLOSING, _CLOSED = "new", "running", "closing", "closed"

    def __init__(
        self,
        *,
        workers: int | None = None,
        queue_size: int = 10_000,
        on_full: str = "raise",
        block_timeout: float | None = 10.0,
        history: int = 10_000,
        drain_timeout: float = 20.0,
        idle_timeout: float = 60.0,
        abandon_timeout: float = 5.0,
        max_abandoned: int | None = None,
        eager: bool = False,
        journal: Any = None,
        hooks: list[object] | tuple[object, ...] = (),
        clock: Clock | None = None,
        name: str = "offload",
    ) -> None:
        settings = RunnerSettings(
            workers=workers,
            queue_size=queue_size,
            on_full=on_full,
            block_timeout=block_timeout,
            history=history,
            drain_timeout=drain_timeout,
            idle_timeout=idle_timeout,
            abandon_timeout=abandon_timeout,
            max_abandoned=max_abandoned,
            eager=eager,
            journal=journal,
        )
        self._setup(settings, hooks=hooks, clock=clock, name=name)

    @classmethod
    def from_settings(
        cls, settings: RunnerSettings, *, hooks: list[object] | tuple[object, ...] = (), clock: Clock | None = None
    ) -> Runner:
        """A runner with already validated settings (used by ``configure``)."""
        runner = cls.__new__(cls)
        runner._setup(settings, hooks=hooks, clock=clock, name="offload")
        return runner

    def _setup(
        self, settings: RunnerSettings, *, hooks: list[object] | tuple[object, ...], clock: Clock | None, name: str
    ) -> None:
        if clock is not None and not all(callable(getattr(clock, m, None)) for m in ("monotonic", "time", "wait")):
            raise ConfigurationError(f"Runner: clock must provide monotonic(), time() and wait(), got {clock!r}")
        self.settings = settings
        self.name = check.name("Runner", "name", name)
        self._clock = clock = clock or SYSTEM_CLOCK
        # Bound once: the hot paths call these for every task.
        self._now: Callable[[], float] = time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic
        self._wall: Callable[[], float] = time.time if clock is SYSTEM_CLOCK else clock.time
        self._hooks = HookSet(hooks)
        self._eager = settings.eager
        assert settings.workers is not None
        self._workers_max = settings.workers
        self._plain_options = TaskOptions(name="offload.submit")
        self._init_state()
        runners.add(self)
        self._journal: Durable | None = None
        if settings.journal is not None:
            self._journal = Durable.attach(self, settings.journal)
        # Neither eager nor journaled: a new task goes straight to _queue (the hot path).
        self._plain = not settings.eager and self._journal is None

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._timer_cond = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._idle_cond = threading.Condition(self._lock)
        self._thread_exit = threading.Condition(self._lock)
        self._state = self._NEW
        self._ready = ReadyQueue()
        self._tokens: SimpleQueue[object] = SimpleQueue()
        self._timers: list[tuple[float, int, int, TaskHandle, int]] = []
        self._timer_seq = itertools.count()
        self._timer_thread: threading.Thread | None = None
        self._timer_stop = False
        self._stale_timers = 0
        self._threads: set[threading.Thread] = set()
        self._n_threads = 0
        self._idle = 0
        self._blocked = 0
        self._joiners = 0
        self._n_queued = self._n_scheduled = self._n_retrying = self._n_running = self._n_pending = 0
        self._submitted = self._succeeded = self._failed = self._cancelled = 0
        self._retries = self._failed_attempts = 0
        self._abandoned = self._abandoned_alive = 0
        self._interrupted = 0  # journal recovery: at_most_once tasks of dead owners
        self._abandoned_idents: set[int] = set()  # threads given up on, still inside a task
        self._max_threads = self._workers_max
        self._queue_size = self.settings.queue_size
        self._durations: deque[float] = deque(maxlen=_DURATION_WINDOW)
        self._active: dict[str, TaskHandle] = {}
        self._history = MemoryStore(history=self.settings.history, lock=self._lock)
        self._keep_finished = self._history.keep_locked  # bound once: _retire runs for every task
        self._drain_deadline = 0.0
        self._closed_event = threading.Event()
        self._drainer: threading.Thread | None = None
        self._flow_state = FlowState()

    def __repr__(self) -> str:
        return f"<offload.Runner {self.name} {self._state} workers={self._workers_max}>"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    # -- hooks ------------------------------------------------------------

    def add_hook(self, hook: object) -> None:
        """Register a :class:`~offload.Hook` (or any object with some of its methods)."""
        self._hooks.add(hook)

    def remove_hook(self, hook: object) -> bool:
        """Unregister a hook; return whether it was registered."""
        return self._hooks.remove(hook)

    # -- start -------------------------------------------------------------

    def start(self, *, periodic: bool = True, state_dir: str | os.PathLike[str] | None = None) -> Runner:
        """Open the runner now (it otherwise opens on the first task) and run periodic tasks.

        Args:
            periodic: run the ticks of the tasks declared with :func:`offload.periodic`
                on this runner, unless another runner of this process runs them.
            state_dir: directory of the files that let the processes of one host
                fire each tick once; by default a per-user, per-working-directory
                folder in the temporary directory.

        Returns the runner. Idempotent.

        Raises:
            RunnerClosedError: the runner is shutting down.
        """
        check.flag("Runner.start()", "periodic", periodic)
        with self._lock:
            if self._state is not self._RUNNING:
                if self._state is not self._NEW:
                    raise RunnerClosedError(f"Runner.start(): runner {self.name!r} is {self._state}")
                self._state = self._RUNNING
                register_exit_drain()
        if periodic and not self._eager:
            start_beat(self, state_dir)
        return self

    # -- admission (in _admission.py) -------------------------------------------

    submit = _admission.submit
    _enqueue = _admission.enqueue
    _admit = _admission.admit
    _queue = _admission.queue
    _check_open = _admission.check_open
    _open_locked = _admission.open_locked
    _wait_for_room_locked = _admission.wait_for_room_locked

    # -- threads ----------------------------------------------------------

    def _abandoned_changed_locked(self, delta: int) -> None:
        """Count abandoned threads; past ``max_abandoned`` each one costs a worker slot."""
        self._abandoned_alive += delta
        excess = self._abandoned_alive - self.settings.abandon_cap
        self._max_threads = self._workers_max - excess if excess > 0 else self._workers_max

    def _spawn_locked(self) -> None:
        if self._n_threads < self._max_threads and self._state is not self._CLOSED:
            self._n_threads += 1
            self._new_worker_locked().start()

    def _new_worker_locked(self) -> threading.Thread:
        thread = threading.Thread(target=worker_loop, args=(self,), name=f"{self.name}-worker", daemon=True)
        self._threads.add(thread)
        return thread

    def _start_worker(self) -> None:
        with self._lock:
            thread = self._new_worker_locked()
        thread.start()

    def _make_ready_locked(self, handle: TaskHandle) -> None:
        handle.state = _QUEUED
        self._ready.push(handle)
        self._n_queued += 1
        self._tokens.put(None)
        if self._n_queued > self._idle and self._n_threads < self._max_threads:
            self._n_threads += 1
            self._new_worker_locked().start()

    # -- cancel, finish, drop ----------------------------------------------

    def _cancel(self, handle: TaskHandle, reason: str) -> bool:
        with self._lock:
            if handle.state is _CANCELLED:
                return True
            if handle.state is State.RUNNING:
                request_cancel_locked(self, handle)
                return False
            if not self._drop_locked(handle, reason):
                return False
        if self._journal is not None:
            self._journal.cancelled(handle, reason)
        handle._settle()
        return True

    def _drop_locked(self, handle: TaskHandle, reason: str) -> bool:
        """Cancel a task that has not started (or waits for a retry at shutdown)."""
        state = handle.state
        if state is _QUEUED:
            self._n_queued -= 1
        elif state is _PENDING:
            self._n_pending -= 1
        elif state is _SCHEDULED:
            self._n_scheduled -= 1
            self._stale_timers += 1
        elif state is State.RETRYING:
            self._n_retrying -= 1
            self._stale_timers += 1
        else:
            return False
        self._end_cancelled_locked(handle, reason)
        if self._blocked:
            self._space.notify()
        return True

    def _end_cancelled_locked(self, handle: TaskHandle, reason: str) -> None:
        """Set a task's final state CANCELLED, count it and retire it (its state counter already left)."""
        handle.state = _CANCELLED
        handle.cancel_reason = reason
        handle.finished_at = self._wall()
        handle.next_attempt_at = None
        self._cancelled += 1
        self._retire(handle)

    def _retire(self, handle: TaskHandle) -> None:
        """Move a finished handle from active to history (lock held).

        A failed task keeps its function and arguments (bounded by ``history``)
        so that it can be inspected and retried from the dashboard.
        """
        handle._ctx = None
        if handle.state is not State.FAILED:
            handle._fn = handle._args = handle._kwargs = None  # type: ignore[assignment]
        if handle._flow is not None:
            retired_locked(self, handle)
        self._active.pop(handle.id, None)
        self._keep_finished(handle)
        if self._joiners and not (self._n_queued or self._n_scheduled or self._n_retrying or self._n_running):
            self._idle_cond.notify_all()

    # -- lookups and stats ------------------------------------------------

    def get(self, task_id: str) -> TaskHandle | None:
        """The handle of an unfinished or recently finished task, or ``None``.

        With a journal, a task this process does not hold is looked up there (any
        process's task): the handle is a snapshot of its row.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"get(): task id must be a str, got {task_id!r}")
        with self._lock:  # the history shares it: one look at both tables
            handle = self._active.get(task_id) or self._history.handle_locked(task_id)
        if handle is None and self._journal is not None:
            handle = self._journal.lookup(task_id)
        return handle

    @property
    def history(self) -> MemoryStore:
        """The finished tasks this runner keeps in memory (the newest ``history``), as a Store.

        Read it with the :class:`~offload.journal.Store` contract, as a journal:
        ``runner.history.list_tasks(Filter(state="failed"))``, ``counts()``,
        ``prune(now, keep=0)``. Rows are built when read; ``get(id)`` returns
        the live handle instead.
        """
        return self._history

    def _snapshot(self) -> list[TaskHandle]:
        """Every unfinished and kept finished handle, read at one instant (for monitoring)."""
        with self._lock:
            return [*self._active.values(), *self._history.handles_locked()]

    def stats(self) -> RunnerStats:
        """A frozen snapshot of counts, queue depth, threads and run times."""
        return take_stats(self)

    # -- waiting and shutdown ---------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no task is queued, scheduled, retrying or running.

        For tests and scripts; a web app never needs it. Returns False if
        ``timeout`` (real seconds) passed first.
        """
        _check_timeout(timeout, "join")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._joiners += 1
            try:
                while self._n_queued or self._n_scheduled or self._n_retrying or self._n_running:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle_cond.wait(remaining)
                return True
            finally:
                self._joiners -= 1

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Stop accepting tasks, drain, then stop the threads. Idempotent.

        Args:
            wait: block until the drain is over; otherwise it goes on in the background.
            cancel_pending: cancel every task that has not started instead of running it.
            timeout: seconds the drain may take (default ``drain_timeout``). Tasks
                still waiting after it are dropped and logged at WARNING by name and id.
        """
        drain = check_shutdown_arguments(wait, cancel_pending, timeout)
        drain = self.settings.drain_timeout if drain is None else drain
        with self._lock:
            first = self._state in (self._NEW, self._RUNNING)
            if first:
                self._state = self._CLOSING
                self._drain_deadline = self._now() + drain
                dropped = drop_waiting_locked(self, cancel_pending)
                if self._blocked:
                    self._space.notify_all()
        if first:
            stop_beat(self)  # no more periodic ticks from this runner
            why = "cancelled at shutdown" if cancel_pending else "not due before the drain deadline"
            log_dropped(self, dropped, why)
            for handle in dropped:
                handle._settle()
            if wait:
                drain_and_close(self)
            else:
                drainer = threading.Thread(target=drain_and_close, args=(self,), name=f"{self.name}-drain", daemon=True)
                self._drainer = drainer
                drainer.start()
        elif wait:
            self._closed_event.wait()
            background = self._drainer
            if background is not None and background is not threading.current_thread():
                background.join()  # it sets the event last: it has (almost) exited already

    @property
    def closed(self) -> bool:
        """True once ``shutdown()`` has begun."""
        return self._state in (self._CLOSING, self._CLOSED)

    def _reset_after_fork(self) -> None:
        # The child has no threads: start over empty. The parent still owns
        # (and will run) every task that was queued when fork() happened.
        self._init_state()
        if self._journal is not None:
            self._journal.after_fork()
