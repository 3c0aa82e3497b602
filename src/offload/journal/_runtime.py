"""Journal mode: how a Runner keeps its tasks in a Store (the seam between the two).

The runner's in-memory machinery is unchanged; this module adds, per task:

- enqueue: the row is written (owned by this process) before the handle is
  admitted, so an ``enqueue`` that returned is on disk;
- each attempt first marks the row running and counts the attempt (inside the
  attempt, so a journal that refuses the mark fails the attempt, and an
  ``at_most_once`` task never runs unrecorded);
- the outcome is written by hooks (``after_success``, ``after_failure``,
  ``after_retry_scheduled``); a finish is not waited for (``SQLiteJournal``
  writes it to its intake log);
- cancel writes ``cancelled``; shutdown releases the waiting rows to the journal.

And one *keeper* thread per runner: heartbeat (the owner's lease), recovery of
dead owners' rows, claiming unowned rows when there is room, checkpoints and
retention. A journal error in the keeper or a worker is logged and counted,
never raised into the process.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _task
from .._codec import (
    DEFAULT_MAX_PAYLOAD,
    PayloadDecodeError,
    decode_payload,
    decode_value,
    encode_payload,
    encode_result,
)
from .._errors import ConfigurationError, JournalError, NotRunError, OffloadError, PayloadError
from .._flow import attach_recovered
from .._handle import ErrorInfo, State, TaskHandle
from .._hooks import Hook
from .._log import runner_log
from .._task import TaskOptions
from ._owner import is_alive, owner_id
from ._store import (
    CANCELLED,
    DECODE_ERROR,
    FAILED,
    INTERRUPTED,
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    UNKNOWN_TASK,
    WAITING,
    Store,
    TaskRecord,
)

if TYPE_CHECKING:
    from .._runner import Runner

#: Seconds between heartbeats, recovery scans and (when idle) claims.
HEARTBEAT_INTERVAL = 1.0
#: Seconds without a heartbeat after which an owner whose liveness cannot be
#: checked (another host) is presumed dead.
LEASE_TIMEOUT = 3.0
#: Seconds between the keeper's passive checkpoints, and between WAL truncations.
CHECKPOINT_INTERVAL = 0.2
TRUNCATE_INTERVAL = 30.0
PRUNE_INTERVAL = 60.0


def check_journal_option(value: object, *, eager: bool) -> None:
    """Validate ``Runner(journal=...)``: a path or a Store, and not with ``eager``."""
    if not isinstance(value, (str, os.PathLike, Store)) or (isinstance(value, str) and not value):
        raise ConfigurationError(
            f"Runner: journal must be a file path or an offload.journal.Store (or None), got {value!r}"
        )
    if eager:
        raise ConfigurationError("Runner: eager=True runs tasks inline and cannot be combined with a journal")


class _StolenError(NotRunError, JournalError):
    """The row is no longer this process's to run: cancelled elsewhere, or taken over."""


class Durable(Hook):
    """The journal side of one runner (see the module docstring)."""

    def __init__(self, runner: Runner, store: Store, *, owns_store: bool) -> None:
        self.runner = runner
        self.store = store
        self.owns_store = owns_store
        self.owner = owner_id()
        self.max_payload = int(getattr(store, "max_payload", DEFAULT_MAX_PAYLOAD))
        self.errors = 0
        self.recovered = 0
        self._wake = threading.Event()
        self._stopping = False
        self._backlog = True  # rows may be waiting to be claimed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_error_log: dict[str, float] = {}

    @classmethod
    def attach(cls, runner: Runner, journal: object) -> Durable:
        """Open the journal, register as the runner's hook, start the keeper."""
        if isinstance(journal, Store):
            store, owns = journal, False
        else:
            from ._sqlite import SQLiteJournal

            store, owns = SQLiteJournal(journal), True  # type: ignore[arg-type]
        durable = cls(runner, store, owns_store=owns)
        try:
            store.heartbeat(durable.owner, time.time())
        except BaseException:
            if owns:
                store.close()
            raise
        runner._hooks.add(durable)
        with runner._lock:
            if runner._state is runner._NEW:
                # A journal runner runs from the start: it has recovered work to do.
                runner._state = runner._RUNNING
                from .._shutdown import register_exit_drain

                register_exit_drain()
        durable._start_keeper()
        return durable

    # -- the request thread ------------------------------------------------------

    def enqueue(self, handle: TaskHandle, delay: float) -> None:
        """Write a new task's row; raise PayloadError or JournalWriteError if it cannot be."""
        fn = handle._fn
        task = _task._registry.get(handle.name)
        if task is None or (task.fn is not fn and not isinstance(fn, _Attempt)):
            raise PayloadError(
                f"task {handle.name!r}: a runner with a journal only accepts declared tasks, found by their "
                "registered name in the process that runs them; decorate the function with @offload.task"
            )
        payload = encode_payload(handle.name, handle._args, handle._kwargs, self.max_payload)
        record = TaskRecord(
            id=handle.id,
            name=handle.name,
            payload=payload,
            queue=handle.queue,
            priority=handle.priority,
            state=SCHEDULED if delay > 0.0 else QUEUED,
            at_most_once=handle._options.at_most_once,
            created_at=handle.created_at,
            run_at=handle.created_at + delay,
            owner=self.owner if self.runner._workers_max else None,  # enqueue only: anyone may claim it
        )
        self.store.enqueue([record])
        handle._fn = _Attempt(self, handle.id, task.fn)  # a bound task's context wraps it later

    def forget(self, handle: TaskHandle) -> None:
        """Remove the row of a task the runner refused after it was written."""
        try:
            self.store.delete(handle.id)
        except JournalError as exc:
            self._log_error("could not remove the row of refused task %s (id %s): %s", handle.name, handle.id, exc)

    def cancelled(self, handle: TaskHandle, reason: str) -> None:
        try:
            self.store.cancel(handle.id, reason, self.runner._wall(), owner=self.owner)
        except JournalError as exc:
            self._log_error("cancel of task %s (id %s) not recorded: %s", handle.name, handle.id, exc)

    def lookup(self, task_id: str) -> TaskHandle | None:
        """A snapshot handle of a journal row this process does not hold (any process's task).

        ``result()`` returns the stored result (None if it was not stored); for a
        failed task it raises :class:`~offload.OffloadError` with the recorded
        error's class and message (the exception object lives only in the
        process that ran it). Such a handle never changes: look it up again.
        """
        record = self.store.fetch(task_id)
        if record is None:
            return None
        task = _task._registry.get(record.name)
        options = task.options if task is not None else TaskOptions(name=record.name)
        handle = TaskHandle(
            record.id, record.name, None, (), {}, options, None, record.created_at, record.priority, None, None
        )
        handle.state = State(record.state)
        handle.attempts = record.attempts
        handle.error = record.error
        handle.started_at = record.started_at
        handle.finished_at = record.finished_at
        if record.state in WAITING:
            handle.next_attempt_at = record.run_at
        if record.state in (CANCELLED, INTERRUPTED):
            handle.cancel_reason = record.reason or record.state
        if record.result is not None:
            try:
                handle._result = decode_value(record.result)
            except PayloadDecodeError:
                handle._result = None
        if record.state == FAILED:
            what = f"{record.error.type}: {record.error.message}" if record.error else record.reason or "failed"
            handle._exc = OffloadError(f"task {record.name} (id {record.id}) failed: {what}")
        return handle

    # -- worker threads (hooks) --------------------------------------------------

    def start_attempt(self, task_id: str) -> None:
        if not self.store.start(task_id, self.owner, self.runner._wall()):
            raise _StolenError(self._why_not_held(task_id))

    def _why_not_held(self, task_id: str) -> str:
        """Why this process may not start a row it loaded (the task's cancel_reason)."""
        try:
            row = self.store.fetch(task_id)
        except JournalError as exc:
            return f"its journal row could not be read to start it ({exc})"
        if row is None:
            return "its journal row is gone (deleted or purged)"
        if row.state == CANCELLED:
            return f"its journal row was cancelled ({row.reason or 'cancelled'})"
        if row.owner is not None and row.owner != self.owner:
            return f"its journal row was taken over by process {row.owner}, which runs it"
        return f"its journal row is {row.state} and no longer held by this process ({self.owner})"

    def _claim_more(self) -> None:
        runner = self.runner
        if runner._n_queued < runner._workers_max and self._backlog:
            self._wake.set()

    def after_success(self, handle: TaskHandle, result: Any) -> None:
        self._finish(handle, SUCCEEDED, result=encode_result(result, self.max_payload))

    def after_failure(self, handle: TaskHandle, exc: BaseException) -> None:
        self._finish(handle, FAILED, error=handle.error)

    def _finish(self, handle: TaskHandle, state: str, *, result: str | None = None, error: Any = None) -> None:
        # Not waited for: SQLiteJournal appends it to its intake log (with intake=False it
        # rides with the next commit, or the keeper's flush within CHECKPOINT_INTERVAL).
        self._claim_more()
        try:
            self.store.finish(handle.id, self.owner, state, self.runner._wall(), result=result, error=error, wait=False)
        except JournalError as exc:
            self._log_error("outcome of task %s (id %s) not recorded: %s", handle.name, handle.id, exc)

    def after_retry_scheduled(self, handle: TaskHandle, exc: BaseException, delay: float) -> None:
        from .._workers import error_info

        run_at = handle.next_attempt_at if handle.next_attempt_at is not None else self.runner._wall() + delay
        try:
            self.store.retry(handle.id, self.owner, run_at, error_info(exc))
        except JournalError as error:
            self._log_error("retry of task %s (id %s) not recorded: %s", handle.name, handle.id, error)

    def on_shutdown(self, runner: Runner) -> None:
        self.close()

    # -- the keeper thread -------------------------------------------------------

    def _start_keeper(self) -> None:
        self._thread = threading.Thread(target=self._keep, name=f"{self.runner.name}-journal", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        last_beat = last_truncate = last_prune = time.monotonic()
        first = True
        while not self._stopping:
            now = time.monotonic()
            if first or now - last_beat >= HEARTBEAT_INTERVAL:
                self._guard("heartbeat", lambda: self.store.heartbeat(self.owner, time.time()))
                self._guard("recovery", self.recover)
                self._guard("flush", self.store.flush)
                self._backlog = True  # poll: rows released by others, scheduled rows now due
                last_beat = now
            self._guard("claim", self.claim)
            self._guard("flush", self.store.flush)
            checkpoint = getattr(self.store, "checkpoint", None)
            if checkpoint is not None:
                truncate = now - last_truncate >= TRUNCATE_INTERVAL
                self._guard("checkpoint", functools.partial(checkpoint, truncate=truncate))
                if truncate:
                    last_truncate = now
            if first or now - last_prune >= PRUNE_INTERVAL:
                self._guard("retention", self.prune)
                last_prune = now
            first = False
            self._wake.wait(CHECKPOINT_INTERVAL)
            self._wake.clear()

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except JournalError as exc:
            self._log_error("journal %s failed: %s", what, exc)
        except Exception:  # pragma: no cover - a bug in offload itself
            self.errors += 1
            runner_log.exception("journal %s failed", what)

    def recover(self) -> None:
        """Take over the rows of dead owners (they become claimable)."""
        recovery = self.store.recover(self.owner, time.time(), lease_timeout=LEASE_TIMEOUT, is_alive=is_alive)
        if not recovery.dead_owners:
            return
        self._backlog = True
        with self.runner._lock:
            self.runner._interrupted += len(recovery.interrupted)
        runner_log.warning(
            "journal: took over from dead process(es) %s: %d interrupted task(s) queued again, %d marked "
            "interrupted (at_most_once), %d failed worker_lost, %d waiting task(s) released",
            ", ".join(recovery.dead_owners),
            len(recovery.requeued),
            len(recovery.interrupted),
            len(recovery.worker_lost),
            recovery.released,
        )

    def claim(self) -> None:
        """Take unowned due rows while the runner has room; load them as handles."""
        runner = self.runner
        while not self._stopping and self._backlog:
            if runner._state is not runner._RUNNING:
                return
            want = 16 * runner._workers_max
            waiting = runner._n_queued + runner._n_scheduled + runner._n_retrying
            limit = min(want - runner._n_queued, runner._queue_size - waiting)
            if limit <= 0:
                return
            records = self.store.claim(self.owner, limit, runner._wall())
            self._backlog = len(records) == limit
            for record in records:
                self._load(record)
            if not self._backlog:
                return

    def _load(self, record: TaskRecord) -> None:
        runner = self.runner
        now = runner._wall()
        task = _task._registry.get(record.name)
        if task is None:
            self.store.finish(
                record.id,
                None,
                FAILED,
                now,
                reason=UNKNOWN_TASK,
                error=ErrorInfo(
                    "offload.UnknownTaskError",
                    f"task name {record.name!r} is not registered in process {self.owner}; import the module "
                    f"that declares it (offload worker --import MODULE), then: offload journal retry {record.id}",
                    "",
                ),
            )
            runner_log.error("journal: task %s (id %s) is not registered here; failed unknown_task", record.name,
                             record.id)  # fmt: skip
            return
        try:
            args, kwargs = decode_payload(record.payload)
        except PayloadDecodeError as exc:
            self.store.finish(
                record.id,
                None,
                FAILED,
                now,
                reason=DECODE_ERROR,
                error=ErrorInfo("offload.PayloadDecodeError", f"arguments cannot be decoded: {exc}", ""),
            )
            runner_log.error("journal: arguments of task %s (id %s) cannot be decoded (%s); failed decode_error",
                             record.name, record.id, exc)  # fmt: skip
            return
        handle = TaskHandle(
            record.id,
            record.name,
            _Attempt(self, record.id, task.fn),
            args,
            kwargs,
            task.options,
            runner,
            record.created_at,
            record.priority,
            None,
            runner._lock,
        )
        handle.attempts = record.attempts
        delay = max(0.0, record.run_at - now)
        if task.options.flow:
            attach_recovered(handle, task.options)  # its context and limits (not unique or expiry)
        self.recovered += 1
        # Closed meanwhile: RunnerClosedError, and the row stays ours until close() releases it.
        runner._queue(handle, delay, wait_for_room=False)

    def prune(self) -> None:
        keep_for = getattr(self.store, "keep_for", None)
        keep = getattr(self.store, "keep_finished", None)
        if keep_for is None and keep is None:
            return
        deleted = self.store.prune(self.runner._wall(), older_than=keep_for, keep=keep)
        if deleted:
            runner_log.info("journal: retention deleted %d finished row(s)", deleted)

    # -- lifecycle ---------------------------------------------------------------

    def _running(self) -> list[TaskHandle]:
        with self.runner._lock:
            return [h for h in self.runner._active.values() if h.state is State.RUNNING]

    def close(self) -> None:
        """Stop the keeper and give the waiting rows back to the journal."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        try:
            self.store.flush()
            released = self.store.release(self.owner, self.runner._wall(), keep=[h.id for h in self._running()])
            if released:
                runner_log.info("journal: %d waiting task(s) left in %s for the next start", released,
                                self.store.path)  # fmt: skip
        except JournalError as exc:
            self._log_error("journal: could not release this process's rows at shutdown: %s", exc)
        if self.owns_store:
            self.store.close()

    def after_fork(self) -> None:
        """In a forked child (a pre-forking server's worker): a new owner and a keeper of its own.

        The parent keeps owning (and running) the rows it holds; the child
        registers itself and starts running recovered and unowned work at once.
        """
        self.owner = owner_id()
        self._stopping = self._closed = False
        self._wake = threading.Event()
        self._backlog = True
        runner = self.runner
        if runner._state is runner._NEW:
            runner._state = runner._RUNNING
        # Fork handlers run in registration order, and offload's runner handler may run
        # before the journal's: reset what the keeper is about to use first.
        from ._forkgate import gate

        gate.after_fork_in_child()
        reset = getattr(self.store, "reset_after_fork", None)
        if reset is not None:
            reset()
        self._start_keeper()

    def _log_error(self, message: str, *args: object) -> None:
        self.errors += 1
        now = time.monotonic()
        # A broken disk must not flood the log: each kind of failure at most once a second.
        if now - self._last_error_log.get(message, -2.0) >= 1.0:
            self._last_error_log[message] = now
            runner_log.error(message + " (journal errors so far: %d)", *args, self.errors)


class _Attempt:
    """The function a journaled handle runs: mark the row running, then call the task."""

    __slots__ = ("durable", "fn", "task_id")

    def __init__(self, durable: Durable, task_id: str, fn: Callable[..., Any]) -> None:
        self.durable = durable
        self.task_id = task_id
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.durable.start_attempt(self.task_id)
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<journaled {self.fn!r}>"
