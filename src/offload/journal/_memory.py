"""MemoryStore: the Store contract in a dict, for tests and as the reference behaviour."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

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
    WAITING,
    WORKER_LOST,
    Filter,
    LivenessCheck,
    Owner,
    Recovery,
    Store,
    TaskRecord,
)


class MemoryStore(Store):
    """Rows in a dict under one lock; nothing survives the process.

    Args:
        history: finished rows kept (the oldest finished are pruned past it);
            ``None`` for no limit.
    """

    def __init__(self, *, history: int | None = None) -> None:
        self._rows: dict[str, TaskRecord] = {}
        self._owners: dict[str, float] = {}
        self._lock = threading.Lock()
        self._history = history

    def _copy(self, row: TaskRecord) -> TaskRecord:
        return dataclasses.replace(row)

    def enqueue(self, records: Sequence[TaskRecord]) -> None:
        with self._lock:
            for record in records:
                if record.id in self._rows:
                    raise ValueError(f"task id {record.id} is already in the store")
            for record in records:
                self._rows[record.id] = self._copy(record)
            if self._history is not None:
                self._prune_locked(0.0, None, self._history, FINISHED)

    def claim(self, owner: str, limit: int, now: float) -> list[TaskRecord]:
        with self._lock:
            free = [r for r in self._rows.values() if r.owner is None and r.state in WAITING and r.run_at <= now]
            free.sort(key=lambda r: -r.priority)  # stable: insertion order among equals
            taken = free[:limit]
            for row in taken:
                row.owner = owner
            return [self._copy(r) for r in taken]

    def start(self, task_id: str, owner: str, now: float) -> bool:
        with self._lock:
            row = self._rows.get(task_id)
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
            row = self._rows.get(task_id)
            if row is None or (owner is not None and row.owner != owner):
                return False
            row.state = state
            row.result = result
            row.error = error
            row.reason = reason
            row.finished_at = now
            row.owner = None
            return True

    def retry(self, task_id: str, owner: str, run_at: float, error: ErrorInfo | None) -> bool:
        with self._lock:
            row = self._rows.get(task_id)
            if row is None or row.owner != owner or row.state != RUNNING:
                return False
            row.state = RETRYING
            row.run_at = run_at
            row.error = error
            return True

    def cancel(self, task_id: str, reason: str, now: float, *, owner: str | None = None) -> bool:
        with self._lock:
            row = self._rows.get(task_id)
            if row is None:
                return False
            if row.state not in WAITING and not (owner is not None and row.state == RUNNING and row.owner == owner):
                return False
            row.state = CANCELLED
            row.reason = reason
            row.finished_at = now
            row.owner = None
            return True

    def requeue(self, task_id: str, now: float) -> bool:
        with self._lock:
            row = self._rows.get(task_id)
            if row is None or row.state not in FINISHED:
                return False
            row.state = QUEUED
            row.run_at = now
            row.finished_at = None
            row.result = None
            row.reason = None
            row.interrupted = 0
            row.owner = None
            return True

    def delete(self, task_id: str) -> bool:
        with self._lock:
            return self._rows.pop(task_id, None) is not None

    def heartbeat(self, owner: str, now: float) -> None:
        with self._lock:
            self._owners[owner] = now

    def owners(self) -> list[Owner]:
        with self._lock:
            found = dict(self._owners)
            for row in self._rows.values():
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
        requeued, interrupted, lost, released = [], [], [], 0
        with self._lock:
            for row in self._rows.values():
                if row.owner not in dead:
                    continue
                if row.state == RUNNING:
                    row.interrupted += 1
                    if row.at_most_once:
                        row.state, row.reason, row.finished_at = INTERRUPTED, PROCESS_DIED, now
                        interrupted.append(row.id)
                    elif row.interrupted >= max_interrupted:
                        row.state, row.reason, row.finished_at = FAILED, WORKER_LOST, now
                        row.error = worker_lost_error(row, max_interrupted)
                        lost.append(row.id)
                    else:
                        row.state, row.run_at = QUEUED, now
                        requeued.append(row.id)
                else:
                    released += 1
                row.owner = None
            for o in dead:
                self._owners.pop(o, None)
        return Recovery(tuple(dead), tuple(requeued), tuple(interrupted), tuple(lost), released)

    def release(self, owner: str, now: float, *, keep: Sequence[str] = ()) -> int:
        keep_ids = set(keep)
        released = 0
        with self._lock:
            for row in self._rows.values():
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
            return None if row is None else self._copy(row)

    def list_tasks(self, where: Filter | None = None) -> list[TaskRecord]:
        where = where or Filter()
        with self._lock:
            rows = [self._copy(r) for r in self._rows.values() if _matches(r, where)]
        if where.newest_first:
            rows.reverse()
        return rows[where.offset : where.offset + where.limit]

    def active_tasks(self, limit: int = 10_000) -> list[TaskRecord]:
        with self._lock:
            rows = [self._copy(r) for r in self._rows.values() if r.state not in FINISHED]
        return rows[:limit]

    def count_tasks(self, where: Filter | None = None, *, cap: int | None = None) -> int:
        where = where or Filter()
        with self._lock:
            found = sum(1 for r in self._rows.values() if _matches(r, where))
        return found if cap is None else min(found, cap)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._lock:
            for row in self._rows.values():
                counts[row.state] += 1
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
            return self._prune_locked(now, older_than, keep, states)

    def _prune_locked(self, now: float, older_than: float | None, keep: int | None, states: Sequence[str]) -> int:
        finished = [r for r in self._rows.values() if r.state in states]
        doomed = []
        if older_than is not None:
            doomed = [r for r in finished if r.finished_at is not None and r.finished_at < now - older_than]
        if keep is not None:
            survivors = [r for r in finished if r not in doomed]
            survivors.sort(key=lambda r: r.finished_at or 0.0)
            doomed += survivors[: max(0, len(survivors) - keep)]
        for row in doomed:
            del self._rows[row.id]
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
