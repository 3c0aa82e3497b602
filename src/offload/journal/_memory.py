"""MemoryStore: the Store contract in a dict; the reference behaviour, and every runner's history.

A runner keeps its finished tasks in one (:attr:`offload.Runner.history`). It
hands over each finished :class:`~offload.TaskHandle` as it is (:meth:`MemoryStore.keep`,
a dict insert under the runner's own lock, so the hot path builds no row); the
contract's reads show a kept handle as a :class:`TaskRecord`, built when read,
and a write to it (``requeue``, ``delete``...) first turns it into one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .._codec import DEFAULT_MAX_PAYLOAD, encode_payload, encode_result
from .._errors import PayloadError
from .._handle import ErrorInfo
from ._store import (
    CANCELLED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    MAX_INTERRUPTED,
    PROCESS_DIED,
    QUEUED,
    RETRYING,
    RUNNING,
    STATES,
    SUCCEEDED,
    WAITING,
    WORKER_LOST,
    Filter,
    LivenessCheck,
    Owner,
    Recovery,
    Store,
    TaskRecord,
)

if TYPE_CHECKING:
    from .._handle import TaskHandle


class MemoryStore(Store):
    """Rows in a dict under one lock; nothing survives the process.

    Args:
        history: finished rows kept (the oldest finished are dropped past it);
            ``None`` for no limit, 0 to keep none.
        lock: the lock guarding the rows (a runner passes its own, see :meth:`keep_locked`).
    """

    def __init__(self, *, history: int | None = None, lock: threading.Lock | None = None) -> None:
        self._rows: dict[str, TaskRecord | TaskHandle] = {}
        # Ids of finished rows, oldest finished first: what the history bound drops.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._owners: dict[str, float] = {}
        self._lock = lock if lock is not None else threading.Lock()
        self._history = history

    # -- a runner's finished handles ---------------------------------------------

    def keep_locked(self, handle: TaskHandle) -> None:
        """Keep a finished handle as it is (the caller holds this store's lock).

        The runner's hot path: two dict inserts, no row built; past ``history``
        finished rows, the oldest goes.
        """
        limit = self._history
        if limit == 0:
            return
        rows, finished, task_id = self._rows, self._finished, handle.id
        rows[task_id] = handle
        finished[task_id] = None
        if limit is not None and len(finished) > limit:
            del rows[finished.popitem(last=False)[0]]  # inline: this runs for every task

    def handle(self, task_id: str) -> TaskHandle | None:
        """The kept handle of a finished task (live objects: result, exception), or None."""
        with self._lock:
            return self.handle_locked(task_id)

    def handle_locked(self, task_id: str) -> TaskHandle | None:
        """:meth:`handle`, the caller holding this store's lock."""
        row = self._rows.get(task_id)
        return None if row is None or isinstance(row, TaskRecord) else row

    def handles_locked(self) -> list[TaskHandle]:
        """Every kept handle, oldest finished first (the caller holds this store's lock)."""
        return [row for row in self._rows.values() if not isinstance(row, TaskRecord)]

    def _row(self, task_id: str) -> TaskRecord | None:
        """The row to change (lock held): a kept handle becomes a record first."""
        row = self._rows.get(task_id)
        if row is None or isinstance(row, TaskRecord):
            return row
        record = self._rows[task_id] = record_of(row)
        return record

    def _records(self) -> Iterator[TaskRecord]:
        """Every row as a record, in insertion order (lock held; kept handles are built, not stored)."""
        for row in self._rows.values():
            yield row if isinstance(row, TaskRecord) else record_of(row)

    def _set_finished(self, row: TaskRecord) -> None:
        """Note that a row reached a final state (lock held), and apply the history bound."""
        self._finished.pop(row.id, None)
        self._finished[row.id] = None
        self._apply_bound()

    def _apply_bound(self) -> None:
        limit = self._history
        if limit is not None:
            finished = self._finished
            while len(finished) > limit:
                oldest, _ = finished.popitem(last=False)
                del self._rows[oldest]

    # -- the contract ------------------------------------------------------------

    def _copy(self, row: TaskRecord) -> TaskRecord:
        return dataclasses.replace(row)

    def enqueue(self, records: Sequence[TaskRecord]) -> None:
        with self._lock:
            for record in records:
                if record.id in self._rows:
                    raise ValueError(f"task id {record.id} is already in the store")
            for record in records:
                copy = self._rows[record.id] = self._copy(record)
                if copy.state in FINISHED:
                    self._set_finished(copy)

    def _live(self) -> Iterator[TaskRecord]:
        """The rows written through the contract (lock held); a kept handle is finished and unowned."""
        for row in self._rows.values():
            if isinstance(row, TaskRecord):
                yield row

    def claim(self, owner: str, limit: int, now: float) -> list[TaskRecord]:
        with self._lock:
            free = [r for r in self._live() if r.owner is None and r.state in WAITING and r.run_at <= now]
            free.sort(key=lambda r: -r.priority)  # stable: insertion order among equals
            taken = free[:limit]
            for row in taken:
                row.owner = owner
            return [self._copy(r) for r in taken]

    def start(self, task_id: str, owner: str, now: float) -> bool:
        with self._lock:
            row = self._row(task_id)
            if row is None or row.owner != owner or (row.state not in WAITING and row.state != RUNNING):
                return False
            row.state = RUNNING
            row.attempts += 1
            if row.started_at is None:
                row.started_at = now
            return True

    def finish(
        self,
        task_id: str,
        owner: str | None,
        state: str,
        now: float,
        *,
        result: str | None = None,
        error: ErrorInfo | None = None,
        reason: str | None = None,
        wait: bool = True,
    ) -> bool:
        if state not in FINISHED:
            raise ValueError(f"finish(): {state!r} is not a final state")
        with self._lock:
            row = self._row(task_id)
            if row is None or (owner is not None and row.owner != owner):
                return False
            row.state = state
            row.result = result
            row.error = error
            row.reason = reason
            row.finished_at = now
            row.owner = None
            self._set_finished(row)
            return True

    def retry(self, task_id: str, owner: str, run_at: float, error: ErrorInfo | None) -> bool:
        with self._lock:
            row = self._row(task_id)
            if row is None or row.owner != owner or row.state != RUNNING:
                return False
            row.state = RETRYING
            row.run_at = run_at
            row.error = error
            return True

    def cancel(self, task_id: str, reason: str, now: float, *, owner: str | None = None) -> bool:
        with self._lock:
            row = self._row(task_id)
            if row is None:
                return False
            if row.state not in WAITING and not (owner is not None and row.state == RUNNING and row.owner == owner):
                return False
            row.state = CANCELLED
            row.reason = reason
            row.finished_at = now
            row.owner = None
            self._set_finished(row)
            return True

    def requeue(self, task_id: str, now: float) -> bool:
        with self._lock:
            row = self._row(task_id)
            if row is None or row.state not in FINISHED:
                return False
            row.state = QUEUED
            row.run_at = now
            row.finished_at = None
            row.result = None
            row.reason = None
            row.interrupted = 0
            row.owner = None
            self._finished.pop(task_id, None)
            return True

    def delete(self, task_id: str) -> bool:
        with self._lock:
            self._finished.pop(task_id, None)
            return self._rows.pop(task_id, None) is not None

    def heartbeat(self, owner: str, now: float) -> None:
        with self._lock:
            self._owners[owner] = now

    def owners(self) -> list[Owner]:
        with self._lock:
            found = dict(self._owners)
            for row in self._live():
                if row.owner is not None:
                    found.setdefault(row.owner, 0.0)
        return [Owner(o, h) for o, h in sorted(found.items())]

    def recover(
        self,
        owner: str,
        now: float,
        *,
        lease_timeout: float,
        is_alive: LivenessCheck,
        max_interrupted: int = MAX_INTERRUPTED,
    ) -> Recovery:
        dead = [
            o.owner
            for o in self.owners()
            if o.owner != owner and _is_dead(is_alive(o.owner), o.heartbeat, now, lease_timeout)
        ]
        requeued, interrupted, lost, ended, released = [], [], [], [], 0
        with self._lock:
            for row in self._live():
                if row.owner not in dead:
                    continue
                if row.state == RUNNING:
                    row.interrupted += 1
                    if row.at_most_once:
                        row.state, row.reason, row.finished_at = INTERRUPTED, PROCESS_DIED, now
                        interrupted.append(row.id)
                        ended.append(row)
                    elif row.interrupted >= max_interrupted:
                        row.state, row.reason, row.finished_at = FAILED, WORKER_LOST, now
                        row.error = worker_lost_error(row, max_interrupted)
                        lost.append(row.id)
                        ended.append(row)
                    else:
                        row.state, row.run_at = QUEUED, now
                        requeued.append(row.id)
                else:
                    released += 1
                row.owner = None
            for row in ended:
                self._set_finished(row)
            for o in dead:
                self._owners.pop(o, None)
        return Recovery(tuple(dead), tuple(requeued), tuple(interrupted), tuple(lost), released)

    def release(self, owner: str, now: float, *, keep: Sequence[str] = ()) -> int:
        keep_ids = set(keep)
        released = 0
        with self._lock:
            for row in self._live():
                if row.owner != owner or row.id in keep_ids:
                    continue
                if row.state == RUNNING:
                    row.state, row.run_at = QUEUED, now
                row.owner = None
                released += 1
            if not keep_ids:
                self._owners.pop(owner, None)
        return released

    def fetch(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            row = self._rows.get(task_id)
        if row is None:
            return None
        return self._copy(row) if isinstance(row, TaskRecord) else record_of(row)

    def list_tasks(self, where: Filter | None = None) -> list[TaskRecord]:
        where = where or Filter()
        with self._lock:
            rows = [self._copy(r) for r in self._records() if _matches(r, where)]
        if where.newest_first:
            rows.reverse()
        return rows[where.offset : where.offset + where.limit]

    def active_tasks(self, limit: int = 10_000) -> list[TaskRecord]:
        with self._lock:
            rows = [self._copy(r) for r in self._live() if r.state not in FINISHED]
        return rows[:limit]

    def count_tasks(self, where: Filter | None = None, *, cap: int | None = None) -> int:
        where = where or Filter()
        with self._lock:
            found = sum(1 for r in self._records() if _matches(r, where))
        return found if cap is None else min(found, cap)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._lock:
            for row in self._rows.values():
                counts[row.state] += 1  # a kept handle's State is a str equal to its value
        return counts

    def prune(
        self,
        now: float,
        *,
        older_than: float | None = None,
        keep: int | None = None,
        states: Sequence[str] = FINISHED,
    ) -> int:
        with self._lock:
            rows = self._rows
            finished = [rows[i] for i in self._finished if rows[i].state in states]
            finished.sort(key=lambda r: r.finished_at or 0.0)  # stable: order of finishing among equals
            doomed = []
            if older_than is not None:
                doomed = [r for r in finished if r.finished_at is not None and r.finished_at < now - older_than]
            if keep is not None:
                gone = {r.id for r in doomed}
                survivors = [r for r in finished if r.id not in gone]
                doomed += survivors[: max(0, len(survivors) - keep)]
            for row in doomed:
                del rows[row.id]
                del self._finished[row.id]
            return len(doomed)


def _matches(r: TaskRecord, where: Filter) -> bool:
    """Whether a row meets every condition of ``where`` (limit and offset aside)."""
    finished = r.finished_at
    return (
        (where.state is None or r.state == where.state)
        and (where.name is None or r.name == where.name)
        and (where.queue is None or r.queue == where.queue)
        and (where.created_since is None or r.created_at >= where.created_since)
        and (where.created_before is None or r.created_at < where.created_before)
        and (where.finished_before is None or (finished is not None and finished < where.finished_before))
        and (where.finished_since is None or (finished is not None and finished >= where.finished_since))
    )


def record_of(handle: TaskHandle) -> TaskRecord:
    """A finished handle as a row (built when read: the runner keeps the handle itself).

    The arguments are kept only by a failed task, and the result only as an
    object: each is stored as JSON text when it can be, else ``""`` / ``None``.
    """
    payload = ""
    args, kwargs = handle._args, handle._kwargs
    if args is not None and kwargs is not None:
        try:
            payload = encode_payload(handle.name, args, kwargs, DEFAULT_MAX_PAYLOAD)
        except PayloadError:
            pass
    result = encode_result(handle._result, DEFAULT_MAX_PAYLOAD) if handle.state == SUCCEEDED else None
    return TaskRecord(
        id=handle.id,
        name=handle.name,
        payload=payload,
        queue=handle.queue,
        priority=handle.priority,
        state=handle.state.value,
        attempts=handle.attempts,
        at_most_once=handle._options.at_most_once,
        created_at=handle.created_at,
        run_at=handle.created_at,
        started_at=handle.started_at,
        finished_at=handle.finished_at,
        result=result,
        error=handle.error,
        reason=handle.cancel_reason,
    )


def _is_dead(alive: bool | None, heartbeat: float, now: float, lease_timeout: float) -> bool:
    if alive is not None:
        return not alive
    return heartbeat < now - lease_timeout


def worker_lost_error(row: TaskRecord, max_interrupted: int) -> ErrorInfo:
    """The error recorded on a row failed with ``worker_lost``."""
    return ErrorInfo(
        type="offload.WorkerLostError",
        message=(
            f"task {row.name} (id {row.id}): its process died during {row.interrupted} attempt(s) "
            f"(limit {max_interrupted}); not retried again. Run it by hand once the cause is fixed: "
            f"offload journal retry {row.id}"
        ),
        traceback="",
    )
