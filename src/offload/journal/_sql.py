"""The SQL statements of the hot paths, and rows <-> TaskRecord."""

from __future__ import annotations

from typing import Any

from .._handle import ErrorInfo
from ._store import TaskRecord

COLUMNS = (
    "id, name, payload, queue, priority, state, attempts, interrupted, at_most_once, created_at, run_at, "
    "started_at, finished_at, owner, result, error_type, error_message, error_traceback, reason"
)

INSERT = (
    "INSERT INTO tasks (id, name, payload, queue, priority, state, attempts, interrupted, at_most_once, "
    "created_at, run_at, owner, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
START = (
    "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = coalesce(started_at, ?) "
    "WHERE id = ? AND owner = ? AND state IN ('queued', 'scheduled', 'retrying', 'running')"
)
_FINISH = (
    "UPDATE tasks SET state = ?, result = ?, error_type = ?, error_message = ?, error_traceback = ?, "
    "reason = ?, finished_at = ?, owner = NULL WHERE id = ?"
)
FINISH_ANY = _FINISH
FINISH_OWNED = _FINISH + " AND owner = ?"
RETRY = (
    "UPDATE tasks SET state = 'retrying', run_at = ?, error_type = ?, error_message = ?, error_traceback = ? "
    "WHERE id = ? AND owner = ? AND state = 'running'"
)
CANCEL = (
    "UPDATE tasks SET state = 'cancelled', reason = ?, finished_at = ?, owner = NULL "
    "WHERE id = ? AND state IN ('queued', 'scheduled', 'retrying')"
)
CANCEL_OWNED = (
    "UPDATE tasks SET state = 'cancelled', reason = ?, finished_at = ?, owner = NULL "
    "WHERE id = ? AND (state IN ('queued', 'scheduled', 'retrying') OR (state = 'running' AND owner = ?))"
)
REQUEUE = (
    "UPDATE tasks SET state = 'queued', run_at = ?, finished_at = NULL, result = NULL, reason = NULL, "
    "interrupted = 0, owner = NULL "
    "WHERE id = ? AND state IN ('succeeded', 'failed', 'cancelled', 'interrupted', 'expired')"
)
HEARTBEAT = (
    "INSERT INTO owners (owner, heartbeat) VALUES (?, ?) "
    "ON CONFLICT (owner) DO UPDATE SET heartbeat = excluded.heartbeat"
)
CLAIM_SELECT = (
    "SELECT seq FROM tasks WHERE owner IS NULL AND state IN ('queued', 'scheduled', 'retrying') "
    "AND run_at <= ? ORDER BY priority DESC, seq LIMIT ?"
)


def record_params(r: TaskRecord) -> tuple[Any, ...]:
    """INSERT parameters of a new row."""
    return (
        r.id,
        r.name,
        r.payload,
        r.queue,
        r.priority,
        r.state,
        r.attempts,
        r.interrupted,
        int(r.at_most_once),
        r.created_at,
        r.run_at,
        r.owner,
        r.started_at,  # set when a row is enqueued already started (the contract allows it)
    )


def record_from_row(row: tuple[Any, ...]) -> TaskRecord:
    """A TaskRecord from a row selected with :data:`COLUMNS`.

    ``payload`` is kept as stored, whatever its type (a BLOB stays bytes): it is
    only ever given to the JSON decoder, which refuses anything else.
    """
    (id_, name, payload, queue, priority, state, attempts, interrupted, amo, created, run_at, started, finished,
     owner, result, etype, emessage, etraceback, reason) = row  # fmt: skip
    error = None if etype is None else ErrorInfo(str(etype), str(emessage or ""), str(etraceback or ""))
    return TaskRecord(
        id=id_,
        name=name,
        payload=payload,
        queue=queue,
        priority=priority,
        state=state,
        attempts=attempts,
        interrupted=interrupted,
        at_most_once=bool(amo),
        created_at=created,
        run_at=run_at,
        started_at=started,
        finished_at=finished,
        owner=owner,
        result=result,
        error=error,
        reason=reason,
    )
