"""Apply intake records to the SQLite file: a batch in a few statements.

An intake record is a kind and a JSON array (see :mod:`._writer`):

- ``e`` enqueue: the INSERT parameters of a new row (:func:`._sql.record_params`);
- ``s`` start: ``[id, owner, now]``, a start mark (running, one more attempt);
- ``f`` finish: ``[id, owner, state, result, error type, message, traceback, reason, now]``.

A batch is applied kind by kind, inserts first, then starts, then finishes: a
task's later records never come before its earlier ones, because anything
else written about a row (a retry, a cancel) is a transaction that first
applies every record accepted before it. Each kind is one statement over
``json_each`` of the batch (SQLite 3.33+ with JSON, which Python has had for
years): one call into SQLite for thousands of rows, the GIL released for all
of it. Older SQLite builds get ``executemany``.

A batch that breaks a constraint (a hand-made record with an id that exists)
is applied again record by record, each in a savepoint, and the records that
still fail are reported to ``lost`` (logged and counted, never silently
dropped). Errors of the file itself (disk full, locked, read-only, damaged)
propagate: the caller keeps the records and tries again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from .._log import runner_log
from ._sql import FINISH_OWNED, INSERT, START
from ._store import TaskRecord

ENQUEUE, START_MARK, FINISH = "e", "s", "f"

# A str as a JSON string literal, ASCII only (json's own C function).
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def enqueue_record(r: TaskRecord) -> str:
    """The JSON of an ``e`` record: the INSERT parameters of a new row (see ``record_params``)."""
    created = _time(r.created_at)
    run_at = created if r.run_at == r.created_at else _time(r.run_at)  # a float's repr is not free
    return (
        f"[{_quote(r.id)},{_quote(r.name)},{_quote(r.payload)},{_quote(r.queue)},{r.priority:d},{_quote(r.state)},"
        f"{r.attempts:d},{r.interrupted:d},{int(r.at_most_once):d},{created},{run_at},"
        f"{_optional(r.owner)},{'null' if r.started_at is None else _time(r.started_at)}]"
    )


def start_record(task_id: str, owner: str, now: float) -> str:
    return f"[{_quote(task_id)},{_quote(owner)},{_time(now)}]"


def finish_record(task_id: str, owner: str, state: str, result: str | None, error: tuple[str | None, ...],
                  reason: str | None, now: float) -> str:  # fmt: skip
    etype, message, traceback = error
    return (
        f"[{_quote(task_id)},{_quote(owner)},{_quote(state)},{_optional(result)},{_optional(etype)},"
        f"{_optional(message)},{_optional(traceback)},{_optional(reason)},{_time(now)}]"
    )


def _optional(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _time(value: float) -> str:
    text = repr(float(value))
    if text in ("nan", "inf", "-inf"):
        raise ValueError(f"journal times must be finite numbers, got {value!r}")
    return text


_INSERT_COLUMNS = (
    "id, name, payload, queue, priority, state, attempts, interrupted, at_most_once, created_at, run_at, owner, "
    "started_at"
)


def _fields(*names: str) -> str:
    return ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, name in enumerate(names))


_INSERT_MANY = f"INSERT INTO tasks ({_INSERT_COLUMNS}) SELECT {_fields(*_INSERT_COLUMNS.split(', '))} FROM json_each(?)"
_START_MANY = (
    "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = coalesce(started_at, j.t) "
    f"FROM (SELECT {_fields('id', 'o', 't')} FROM json_each(?)) AS j "
    "WHERE tasks.id = j.id AND tasks.owner = j.o AND tasks.state IN ('queued', 'scheduled', 'retrying', 'running')"
)
_FINISH_MANY = (
    "UPDATE tasks SET state = j.s, result = j.r, error_type = j.et, error_message = j.em, error_traceback = j.tb, "
    "reason = j.re, finished_at = j.t, owner = NULL "
    f"FROM (SELECT {_fields('id', 'o', 's', 'r', 'et', 'em', 'tb', 're', 't')} FROM json_each(?)) AS j "
    "WHERE tasks.id = j.id AND tasks.owner = j.o"
)
# A start mark whose row a cancel from another process took just before it (the task runs):
# the row records the run after all.
_STARTED_AFTER_ALL = (
    "UPDATE tasks SET state = 'running', owner = ?, reason = NULL, finished_at = NULL, attempts = attempts + 1, "
    "started_at = coalesce(started_at, ?) WHERE id = ? AND state = 'cancelled' AND owner IS NULL"
)

# Errors of one record, not of the file: isolate the record, keep the others.
_RECORD_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, sqlite3.ProgrammingError,
                  ValueError)  # fmt: skip

Lost = Callable[[str], None]


def set_based(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite can apply a batch in one statement per kind (UPDATE FROM, JSON)."""
    if sqlite3.sqlite_version_info < (3, 33, 0):
        return False
    try:
        conn.execute("SELECT json_extract('[1]', '$[0]')").fetchone()
    except sqlite3.Error:
        return False
    return True


def apply(conn: sqlite3.Connection, ops: Sequence[tuple[str, str]], lost: Lost, *, many: bool = True) -> None:
    """Apply intake records (kind, JSON text) inside the caller's transaction."""
    if not ops:
        return
    conn.execute("SAVEPOINT intake")
    try:
        if many:
            _apply_many(conn, ops)
        else:
            _apply_each(conn, ops)
    except _RECORD_ERRORS:
        conn.execute("ROLLBACK TO intake")
        _apply_one_by_one(conn, ops, lost)
    conn.execute("RELEASE intake")


def _by_kind(ops: Sequence[tuple[str, str]]) -> tuple[list[str], list[str], list[str]]:
    inserts: list[str] = []
    starts: list[str] = []
    finishes: list[str] = []
    lists = {ENQUEUE: inserts, START_MARK: starts, FINISH: finishes}
    for kind, text in ops:
        lists[kind].append(text)
    return inserts, starts, finishes


def _apply_many(conn: sqlite3.Connection, ops: Sequence[tuple[str, str]]) -> None:
    inserts, starts, finishes = _by_kind(ops)
    if inserts:
        conn.execute(_INSERT_MANY, (_array(inserts),))
    if starts and conn.execute(_START_MANY, (_array(starts),)).rowcount < len(starts):
        _unmatched_starts(conn, [json.loads(t) for t in starts])
    if finishes and conn.execute(_FINISH_MANY, (_array(finishes),)).rowcount < len(finishes):
        _unmatched_finishes(conn, [json.loads(t) for t in finishes])


def _array(texts: list[str]) -> str:
    return "[" + ",".join(texts) + "]"


def _apply_each(conn: sqlite3.Connection, ops: Sequence[tuple[str, str]]) -> None:
    """The same without UPDATE FROM or JSON in SQLite (old builds): one statement per record."""
    inserts, starts, finishes = (list(map(json.loads, texts)) for texts in _by_kind(ops))
    if inserts:
        conn.executemany(INSERT, inserts)
    if starts and conn.executemany(START, [(t, i, o) for i, o, t in starts]).rowcount < len(starts):
        _unmatched_starts(conn, starts)
    finish_params = [(s, r, et, em, tb, re, t, i, o) for i, o, s, r, et, em, tb, re, t in finishes]
    if finishes and conn.executemany(FINISH_OWNED, finish_params).rowcount < len(finishes):
        _unmatched_finishes(conn, finishes)


def _apply_one_by_one(conn: sqlite3.Connection, ops: Sequence[tuple[str, str]], lost: Lost) -> None:
    for kind, text in ops:
        conn.execute("SAVEPOINT record")
        try:
            _apply_each(conn, [(kind, text)])
        except _RECORD_ERRORS as exc:
            conn.execute("ROLLBACK TO record")
            lost(f"{_describe(kind, text)} could not be written: {exc}")
        conn.execute("RELEASE record")


def _describe(kind: str, text: str) -> str:
    try:
        task_id = json.loads(text)[0]
    except (ValueError, IndexError, TypeError):
        task_id = "?"
    what = {ENQUEUE: "enqueue", START_MARK: "start mark", FINISH: "outcome"}.get(kind, kind)
    return f"the {what} of task id {task_id}"


def _rows(conn: sqlite3.Connection, ids: list[Any]) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = f"SELECT id, state, owner, reason, finished_at FROM tasks WHERE id IN ({','.join('?' * len(chunk))})"
        found.update((row[0], row) for row in conn.execute(sql, chunk))
    return found


def _unmatched_starts(conn: sqlite3.Connection, starts: list[list[Any]]) -> None:
    """Start marks that changed no row: say why, and record runs that a cancel raced."""
    rows = _rows(conn, [s[0] for s in starts])
    for task_id, owner, now in starts:
        row = rows.get(task_id)
        if row is not None and row[1] == "running" and row[2] == owner:
            continue
        if row is not None and row[1] == "cancelled" and row[2] is None:
            conn.execute(_STARTED_AFTER_ALL, (owner, now, task_id))
            runner_log.warning(
                "journal: task id %s was cancelled from another process (%s) as it started here; it runs, "
                "and its row records the run",
                task_id,
                row[3],
            )
        elif row is None:
            runner_log.warning("journal: task id %s started here, but its row is gone (deleted)", task_id)
        else:
            runner_log.warning(
                "journal: task id %s started here, but its row is %s and held by %s: its start is not recorded",
                task_id,
                row[1],
                row[2],
            )


def _unmatched_finishes(conn: sqlite3.Connection, finishes: list[list[Any]]) -> None:
    rows = _rows(conn, [f[0] for f in finishes])
    for task_id, _owner, state, *_, now in finishes:
        row = rows.get(task_id)
        if row is None:
            runner_log.warning("journal: task id %s ended %s here, but its row is gone (deleted)", task_id, state)
        elif (row[1], row[2], row[4]) != (state, None, now):  # not the row this finish wrote
            runner_log.warning(
                "journal: task id %s ended %s here, but its row is held by %s (%s): its outcome is not recorded",
                task_id,
                state,
                row[2],
                row[1],
            )
