"""SQLiteJournal: the Store contract in an SQLite file (stdlib ``sqlite3``, no server).

The file handling (connections per thread, group commit, fork safety) is in
``_file.py``; this module is the contract's statements and the opening checks.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Sequence

from .. import _validate as check
from .._codec import DEFAULT_MAX_PAYLOAD
from .._errors import ConfigurationError, JournalCorruptError, JournalError, JournalWriteError
from .._handle import ErrorInfo
from ._apply import ENQUEUE, FINISH, START_MARK, enqueue_record, finish_record, start_record
from ._file import SYNCHRONOUS, Op, SQLiteFile
from ._forkgate import gate
from ._intake import intake_dir, logs, mailbox_path, notify, unlink_quietly
from ._memory import _is_dead, worker_lost_error
from ._owner import is_alive as process_is_alive
from ._replay import absorb, dead_logs, forget, replay_dead, stale_positions
from ._schema import migrate
from ._sql import (
    CANCEL,
    CANCEL_OWNED,
    CLAIM_SELECT,
    COLUMNS,
    FINISH_ANY,
    FINISH_OWNED,
    HEARTBEAT,
    INSERT,
    REQUEUE,
    RETRY,
    START,
    record_from_row,
    record_params,
)
from ._store import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    MAX_INTERRUPTED,
    PROCESS_DIED,
    QUEUED,
    STATES,
    WORKER_LOST,
    Filter,
    LivenessCheck,
    Owner,
    Recovery,
    Store,
    TaskRecord,
)
from ._writer import LIVE, Intake

#: The page sizes SQLite accepts.
PAGE_SIZES = tuple(2**n for n in range(9, 17))


class SQLiteJournal(SQLiteFile, Store):
    """A journal in one SQLite file, shareable by several processes on one host.

    Args:
        path: the file; created (mode 0600) with its schema if missing.
        synchronous: ``"normal"`` survives a crash of the process (SIGKILL, OOM
            kill); ``"full"`` also survives power loss, at the cost of an fsync per commit.
        busy_timeout: seconds SQLite waits for another process's write lock per try.
        lock_timeout: seconds a write keeps retrying a locked journal before it
            raises ``JournalWriteError``.
        max_payload: most bytes the encoded arguments (or result) of a task may take.
        keep_finished: finished rows kept by the runner's periodic retention (the
            newest); ``None``: no count limit.
        keep_for: seconds a finished row is kept; ``None``: no age limit.
        check_on_open: run ``PRAGMA quick_check`` when opening and refuse a damaged file.
        page_size: bytes per database page of a new file, a power of two from 512 to
            65536. A commit writes whole pages, and a task's row is small: 2048 writes
            less per task than SQLite's 4096. Raise it if tasks carry arguments or
            results of many KB. A file keeps the page size it was created with.
        intake: with ``synchronous="normal"``, an enqueue, a start mark and a finish
            are written to this instance's intake log (``PATH-intake/``, durable at
            once) and applied to the file by a writer thread in batches, instead of
            each waiting for a commit (see docs/journal.md). ``False``: each commits
            before it returns. ``synchronous="full"`` always commits.

    Raises:
        JournalWriteError: the file or its directory cannot be created or written.
        JournalCorruptError: the file is damaged.
        JournalError: the file was written by a newer schema.
        ConfigurationError: an option is invalid.
    """

    path: str

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        busy_timeout: float = 5.0,
        lock_timeout: float = 30.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        keep_finished: int | None = 100_000,
        keep_for: float | None = 7 * 86400.0,
        check_on_open: bool = True,
        page_size: int = 2048,
        intake: bool = True,
    ) -> None:
        owner = "SQLiteJournal"
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigurationError(f"{owner}: path must be a file path, got {path!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.synchronous = check.choice(owner, "synchronous", str(synchronous).lower(), SYNCHRONOUS)
        self.busy_timeout = check.seconds(owner, "busy_timeout", busy_timeout)
        self.lock_timeout = check.seconds(owner, "lock_timeout", lock_timeout)
        self.max_payload = check.integer(owner, "max_payload", max_payload, minimum=1)
        self.keep_finished = (
            None if keep_finished is None else check.integer(owner, "keep_finished", keep_finished, minimum=0)
        )
        self.keep_for = check.optional_seconds(owner, "keep_for", keep_for)
        check.flag(owner, "check_on_open", check_on_open)
        if isinstance(page_size, bool) or page_size not in PAGE_SIZES:
            raise ConfigurationError(f"{owner}: page_size must be a power of two from 512 to 65536, got {page_size!r}")
        self.page_size = page_size
        check.flag(owner, "intake", intake)
        self._init_file()
        self._create_file()
        with gate:
            conn = self._conn()
        if check_on_open:
            problems = self.check(quick=True)
            if problems != ["ok"]:
                self.close()
                raise JournalCorruptError(self._corrupt_message("; ".join(problems[:5])))
        try:
            with gate:
                conn.execute(f"PRAGMA page_size = {page_size}")  # a no-op unless the file is new
                migrate(conn, self.path, begin=self._begin)
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc, "opening") from exc
        except JournalError:
            self.close()
            raise
        if str(mode).lower() != "wal":
            self.close()
            raise JournalWriteError(f"journal {self.path}: cannot switch to WAL mode (got {mode!r})")
        if intake and self.synchronous == "normal":
            self._intake = Intake(self)
        absorb(self)  # what stopped processes accepted: this instance reads it

    def __repr__(self) -> str:
        return f"<SQLiteJournal {self.path}>"

    # -- the task's life ---------------------------------------------------------

    def enqueue(self, records: Sequence[TaskRecord]) -> None:
        intake = self._intake
        if intake is not None and len(records) == 1:
            record = records[0]
            intake.check()
            held = (record.id, record.owner) if record.state in LIVE else None
            intake.append(ENQUEUE, enqueue_record(record), held)
            return
        if intake is not None:
            intake.ready()  # its mailbox exists before it holds a row
        if len(records) == 1:
            self._write([(INSERT, record_params(records[0]))])
        else:
            params = [record_params(r) for r in records]
            self._write([lambda conn: conn.executemany(INSERT, params).rowcount])
        if intake is not None:
            intake.held.update((r.id, r.owner) for r in records if r.owner is not None and r.state in LIVE)
        self._enqueued()

    def claim(self, owner: str, limit: int, now: float) -> list[TaskRecord]:
        def take(conn: sqlite3.Connection) -> list[TaskRecord]:
            seqs = [row[0] for row in conn.execute(CLAIM_SELECT, (now, limit))]
            if not seqs:
                return []
            conn.executemany("UPDATE tasks SET owner = ? WHERE seq = ?", [(owner, s) for s in seqs])
            records: list[TaskRecord] = []
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT {COLUMNS} FROM tasks WHERE seq IN ({marks}) ORDER BY priority DESC, seq"
                records.extend(record_from_row(row) for row in conn.execute(sql, chunk))
            return records

        intake = self._intake
        if intake is not None:
            intake.ready()  # its mailbox exists before it holds a row
        result: list[TaskRecord] = self._write([take])[0]
        if intake is not None:
            intake.held.update((r.id, owner) for r in result)
        return result

    def start(self, task_id: str, owner: str, now: float) -> bool:
        intake = self._intake
        if intake is not None:
            # A row this instance holds needs no commit to start: only another process could
            # have changed it, and such a process writes to this one's mailbox first.
            if intake.noticed():
                intake.reconcile()
            if intake.held.get(task_id) == owner:
                intake.check()
                intake.append(START_MARK, start_record(task_id, owner, now))
                return True
        # A worker's start mark: it carries the deferred finishes (so at most one finished
        # task per worker is not on disk), and rides with a request thread's commit if one comes.
        return bool(self._write([(START, (now, task_id, owner))], flush=True, patience=self._patience())[0])

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
        e = _error_fields(error)
        reason = _text(reason)
        intake = self._intake
        if intake is not None:
            intake.held.pop(task_id, None)
            if not wait and owner is not None:
                try:
                    intake.append(FINISH, finish_record(task_id, owner, state, result, e, reason, now))
                    return True
                except JournalError:
                    pass  # closed, or the log cannot grow: the deferred write below (or counted lost)
        values = (state, result, *e, reason, now, task_id)
        op: Op = (FINISH_ANY, values) if owner is None else (FINISH_OWNED, (*values, owner))
        if not wait:
            self._write([op], wait=False)
            return True
        return bool(self._write([op])[0])

    def retry(self, task_id: str, owner: str, run_at: float, error: ErrorInfo | None) -> bool:
        return bool(self._write([(RETRY, (run_at, *_error_fields(error), task_id, owner))])[0])

    def cancel(self, task_id: str, reason: str, now: float, *, owner: str | None = None) -> bool:
        if self._intake is not None:
            self._intake.held.pop(task_id, None)
        sql = CANCEL if owner is None else CANCEL_OWNED
        params: tuple[object, ...] = (reason, now, task_id) if owner is None else (reason, now, task_id, owner)

        def cancel_row(conn: sqlite3.Connection) -> tuple[int, str | None]:
            holder = conn.execute("SELECT owner FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return conn.execute(sql, params).rowcount, holder[0] if holder else None

        cancelled, holder = self._write([cancel_row])[0]
        if cancelled and holder is not None and holder != owner:
            # Another process holds it (in memory): it must look again before starting it.
            notify(self._intake_dir, holder)
        return bool(cancelled)

    def requeue(self, task_id: str, now: float) -> bool:
        return bool(self._write([(REQUEUE, (now, task_id))])[0])

    def delete(self, task_id: str) -> bool:
        if self._intake is not None:
            self._intake.held.pop(task_id, None)
        return bool(self._write([("DELETE FROM tasks WHERE id = ?", (task_id,))])[0])

    # -- owners ------------------------------------------------------------------

    def heartbeat(self, owner: str, now: float) -> None:
        self._write([(HEARTBEAT, (owner, now))])

    def owners(self) -> list[Owner]:
        return [Owner(o, h) for o, h in self._read(_OWNERS)]

    def recover(
        self,
        owner: str,
        now: float,
        *,
        lease_timeout: float,
        is_alive: LivenessCheck,
        max_interrupted: int = MAX_INTERRUPTED,
    ) -> Recovery:
        # Cheap checks first, outside the write lock: most of the time nobody died.
        beats = {o.owner: o.heartbeat for o in self.owners() if o.owner != owner}

        @functools.cache
        def is_dead(other: str) -> bool:
            return other != owner and _is_dead(is_alive(other), beats.get(other, 0.0), now, lease_timeout)

        found = logs(self._intake_dir)
        dead_log = dead_logs(found, is_dead)
        stale = stale_positions(self, found)
        if not dead_log and not stale and not any(is_dead(o) for o in beats):
            return Recovery()

        def take_over(conn: sqlite3.Connection) -> Recovery:
            replay_dead(self, conn, dead_log, stale)  # first what the dead had accepted
            dead = [o for o, h in conn.execute(_OWNERS) if o != owner and _is_dead(is_alive(o), h, now, lease_timeout)]
            requeued, interrupted, lost, released = [], [], [], 0
            for gone in dead:
                running = conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE owner = ? AND state = 'running'", (gone,))
                for row in [record_from_row(r) for r in running]:
                    count = row.interrupted + 1
                    state, reason, finished_at, run_at, error = QUEUED, None, None, now, row.error
                    if row.at_most_once:
                        state, reason, finished_at = INTERRUPTED, PROCESS_DIED, now
                        interrupted.append(row.id)
                    elif count >= max_interrupted:
                        row.interrupted = count
                        state, reason, finished_at = FAILED, WORKER_LOST, now
                        error = worker_lost_error(row, max_interrupted)
                        lost.append(row.id)
                    else:
                        requeued.append(row.id)
                    e = (None, None, None) if error is None else (error.type, error.message, error.traceback)
                    conn.execute(_RECOVER_ROW, (state, reason, finished_at, *e, count, run_at, row.id))
                released += conn.execute("UPDATE tasks SET owner = NULL WHERE owner = ?", (gone,)).rowcount
                conn.execute("DELETE FROM owners WHERE owner = ?", (gone,))
            released -= len(requeued) + len(interrupted) + len(lost)
            return Recovery(tuple(dead), tuple(requeued), tuple(interrupted), tuple(lost), released)

        recovery: Recovery = self._write([take_over])[0]
        forget(self, dead_log)
        for gone in recovery.dead_owners:
            # Should that process live after all (a lease that ran out), it looks at its rows
            # again before it starts one; one known dead no longer needs its mailbox.
            if notify(self._intake_dir, gone) and process_is_alive(gone) is False:
                unlink_quietly(mailbox_path(self._intake_dir, gone))
        return recovery

    @property
    def _intake_dir(self) -> str:
        return intake_dir(self.path)

    def release(self, owner: str, now: float, *, keep: Sequence[str] = ()) -> int:
        keep = list(keep)
        if self._intake is not None:
            held = self._intake.held
            for task_id, holder in list(held.items()):
                if holder == owner and task_id not in keep:
                    held.pop(task_id, None)
        not_kept = f" AND id NOT IN ({','.join('?' * len(keep))})" if keep else ""

        def let_go(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"UPDATE tasks SET state = 'queued', run_at = ? WHERE owner = ? AND state = 'running'{not_kept}",
                (now, owner, *keep),
            )
            released = conn.execute(f"UPDATE tasks SET owner = NULL WHERE owner = ?{not_kept}", (owner, *keep)).rowcount
            if not keep:
                conn.execute("DELETE FROM owners WHERE owner = ?", (owner,))
            return int(released)

        released: int = self._write([let_go])[0]
        return released

    # -- reads and housekeeping --------------------------------------------------

    def fetch(self, task_id: str) -> TaskRecord | None:
        rows = self._read(f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return record_from_row(rows[0]) if rows else None

    def list_tasks(self, where: Filter | None = None) -> list[TaskRecord]:
        where = where or Filter()
        conditions, params = _where(where)
        direction = "DESC" if where.newest_first else "ASC"
        if where.state is not None and where.state not in FINISHED:
            # Live rows: from the two partial indexes that hold them (see count_tasks),
            # not a walk of the whole table when fewer than a page of them exist.
            # "seq + 0": ordering by the bare column makes SQLite merge two table scans.
            sql = (
                f"SELECT * FROM (SELECT seq, {COLUMNS} FROM tasks{conditions} AND owner IS NOT NULL UNION ALL "
                f"SELECT seq, {COLUMNS} FROM tasks{conditions} AND {_UNOWNED_WAITING}) "
                f"ORDER BY seq + 0 {direction} LIMIT ? OFFSET ?"
            )
            rows = self._read(sql, (*params, *params, where.limit, where.offset))
            return [record_from_row(row[1:]) for row in rows]
        sql = f"SELECT {COLUMNS} FROM tasks{conditions} ORDER BY seq {direction} LIMIT ? OFFSET ?"
        return [record_from_row(row) for row in self._read(sql, (*params, where.limit, where.offset))]

    def active_tasks(self, limit: int = 10_000) -> list[TaskRecord]:
        # Exactly the rows of the two partial indexes: owned rows (waiting or running;
        # a final state lets go of the owner) and unowned waiting ones.
        return [record_from_row(row) for row in self._read(_ACTIVE, (limit,))]

    def count_tasks(self, where: Filter | None = None, *, cap: int | None = None) -> int:
        where = where or Filter()
        conditions, params = _where(where)
        limit = -1 if cap is None else cap
        if where.state in FINISHED and where.finished_since is None and where.finished_before is None:
            # Always true of a finished row; it lets SQLite count from the partial
            # index tasks_finished (state, finished_at) instead of scanning the table.
            conditions += " AND finished_at IS NOT NULL"
        elif where.state is not None and where.state not in FINISHED:
            # A live row is owned, or unowned and waiting: count it from the two
            # partial indexes that hold exactly those rows (as active_tasks reads them).
            sql = (
                f"SELECT count(*) FROM (SELECT 1 FROM tasks{conditions} AND owner IS NOT NULL UNION ALL "
                f"SELECT 1 FROM tasks{conditions} AND {_UNOWNED_WAITING} LIMIT ?)"
            )
            return int(self._read(sql, (*params, *params, limit))[0][0])
        sql = f"SELECT count(*) FROM (SELECT 1 FROM tasks{conditions} LIMIT ?)"
        return int(self._read(sql, (*params, limit))[0][0])

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self._read("SELECT state, count(*) FROM tasks GROUP BY state"):
            counts[state] = n
        return counts

    def prune(
        self,
        now: float,
        *,
        older_than: float | None = None,
        keep: int | None = None,
        states: Sequence[str] = FINISHED,
    ) -> int:
        marks = ",".join("?" * len(states))

        def delete(conn: sqlite3.Connection) -> int:
            deleted = 0
            if older_than is not None:
                sql = f"DELETE FROM tasks WHERE state IN ({marks}) AND finished_at < ?"
                deleted += conn.execute(sql, (*states, now - older_than)).rowcount
            if keep is not None:
                sql = (
                    f"DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE state IN ({marks}) "
                    "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT -1 OFFSET ?)"
                )
                deleted += conn.execute(sql, (*states, keep)).rowcount
            return deleted

        # Freed pages go to SQLite's free list and are reused by later rows: no VACUUM.
        deleted: int = self._write([delete])[0]
        return deleted


def _text(value: str | None) -> str | None:
    """``value`` storable as UTF-8 (an exception's text may hold lone surrogates)."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _error_fields(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    if error is None:
        return None, None, None
    return _text(error.type), _text(error.message), _text(error.traceback)


# Filter field -> SQL condition on it.
_CONDITIONS = (
    ("state", "state = ?"),
    ("name", "name = ?"),
    ("queue", "queue = ?"),
    ("created_since", "created_at >= ?"),
    ("created_before", "created_at < ?"),
    ("finished_since", "finished_at >= ?"),
    ("finished_before", "finished_at < ?"),
)


def _where(where: Filter) -> tuple[str, list[object]]:
    """The WHERE clause (with its leading space, or empty) and parameters of a filter."""
    conditions: list[str] = []
    params: list[object] = []
    for field, condition in _CONDITIONS:
        value = getattr(where, field)
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


# The condition of the tasks_claimable partial index, word for word: SQLite uses a
# partial index only when the query's WHERE contains its terms.
_UNOWNED_WAITING = "owner IS NULL AND state IN ('queued', 'scheduled', 'retrying')"
_ACTIVE = (
    f"SELECT {COLUMNS} FROM tasks WHERE owner IS NOT NULL "
    "AND state NOT IN ('succeeded', 'failed', 'cancelled', 'interrupted', 'expired') UNION ALL "
    f"SELECT {COLUMNS} FROM tasks WHERE owner IS NULL AND state IN ('queued', 'scheduled', 'retrying') LIMIT ?"
)
_OWNERS = (
    "SELECT owner, heartbeat FROM owners UNION "
    "SELECT DISTINCT owner, 0.0 FROM tasks WHERE owner IS NOT NULL AND owner NOT IN (SELECT owner FROM owners)"
)
_RECOVER_ROW = (
    "UPDATE tasks SET state = ?, reason = ?, finished_at = ?, error_type = ?, error_message = ?, "
    "error_traceback = ?, interrupted = ?, run_at = ? WHERE id = ?"
)
