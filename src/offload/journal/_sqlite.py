"""SQLiteJournal: the Store contract in an SQLite file (stdlib ``sqlite3``, no server).

Settings, and why:

- WAL journal mode: readers never block the writer and a commit is one append.
- One connection per thread (SQLite connections are not shared between threads);
  a connection made before ``fork()`` is never used by the child.
- Every write is ``BEGIN IMMEDIATE``: the write lock is taken up front, so two
  processes never deadlock upgrading read locks; ``busy_timeout`` waits for it,
  and a write still refused after ``lock_timeout`` raises ``JournalWriteError``.
- Group commit: a writing thread appends its statements to a shared list; the
  first one to find no commit in progress commits everything pending in one
  transaction while the others wait on a condition.
  Threads that arrive while a commit is in progress are committed together by
  the next one, so request threads are batched instead of queued one by one
  behind each other or behind the workers.
- ``synchronous`` NORMAL (default) or FULL; see docs/journal.md for what each survives.
- The file is created with mode 0600 (SQLite gives its -wal and -shm files the same).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import _validate as check
from .._codec import DEFAULT_MAX_PAYLOAD
from .._errors import ConfigurationError, JournalCorruptError, JournalError, JournalWriteError
from .._handle import ErrorInfo
from ._memory import _is_dead, worker_lost_error
from ._schema import migrate
from ._sql import (
    CANCEL,
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

SYNCHRONOUS = ("normal", "full")
_allocate_lock = threading.Lock
# WAL pages after which a commit checkpoints by itself (see checkpoint()).
_AUTOCHECKPOINT = 10_000

# An operation of a write: (sql, parameters) or a function run inside the transaction.
Op = tuple[str, Sequence[Any]] | Callable[[sqlite3.Connection], Any]


class _Request:
    __slots__ = ("done", "error", "ops", "results", "wait", "wake")

    def __init__(self, ops: Sequence[Op], wait: bool) -> None:
        self.ops = ops
        self.wait = wait
        self.wake: Any = None  # a held lock a waiting thread sleeps on
        self.results: list[Any] | None = None
        self.error: JournalError | None = None
        self.done = False


class SQLiteJournal(Store):
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
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._pending: list[_Request] = []
        self._mutex = threading.Lock()
        self._committing = False
        self._closed = False
        #: Writes accepted with ``wait=False`` that failed later (each is logged).
        self.lost_writes = 0
        self._create_file()
        conn = self._conn()
        if check_on_open:
            problems = self.check(quick=True)
            if problems != ["ok"]:
                self.close()
                raise JournalCorruptError(self._corrupt_message("; ".join(problems[:5])))
        try:
            migrate(conn, self.path)
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

    def __repr__(self) -> str:
        return f"<SQLiteJournal {self.path}>"

    # -- files and connections ---------------------------------------------------

    def _create_file(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise JournalWriteError(f"journal {self.path}: cannot create the file: {exc}") from exc
        os.close(fd)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork or for a new thread)."""
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        pid = os.getpid()
        local = self._local
        if getattr(local, "pid", None) == pid:
            conn: sqlite3.Connection = local.conn
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            conn.execute(f"PRAGMA journal_size_limit = {_AUTOCHECKPOINT * 4096}")
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc
        local.pid, local.conn = pid, conn
        with self._conns_lock:
            alive = []
            for thread, other in self._conns:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()  # its thread exited (e.g. an idle worker retired)
            alive.append((threading.current_thread(), conn))
            self._conns = alive
        return conn

    def close(self) -> None:
        """Commit pending writes and close every connection of this process."""
        if self._closed:
            return
        try:
            self.flush()
        except JournalError:
            pass  # already logged and counted per write
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        me = threading.current_thread()
        for thread, conn in conns:
            # Another live thread may be inside a statement on its connection right
            # now: closing it under that thread would crash the interpreter. It is
            # refused from now on (_conn raises) and closed when its thread exits.
            if thread is me or not thread.is_alive():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._local = threading.local()

    def _corrupt_message(self, detail: str) -> str:
        return (
            f"journal {self.path} is damaged ({detail}). offload refuses to use it. "
            f"Inspect it with `offload journal check --journal {self.path}`; "
            f"`offload journal repair --journal {self.path}` "
            "moves it aside (to PATH.corrupt-<time>) and copies every readable row into a new file. "
            "Or move it aside yourself and start with an empty journal."
        )

    def _error(self, exc: sqlite3.Error, action: str, *, write: bool = True) -> JournalError:
        text = str(exc)
        if "malformed" in text or "not a database" in text:
            return JournalCorruptError(self._corrupt_message(f"{action}: {text}"))
        cls = JournalWriteError if write else JournalError
        return cls(f"journal {self.path}: {action} failed: {text}")

    # -- group commit ------------------------------------------------------------

    def _write(self, ops: Sequence[Op], *, wait: bool = True) -> list[Any]:
        """Add ``ops`` to the next transaction; unless ``wait`` is False, return once committed.

        The first thread to find no commit in progress is the leader: it takes
        everything pending and commits it in one transaction (outside the
        mutex). Meanwhile others append and sleep on a lock of their own. The
        leader wakes exactly the threads it committed for, then hands the lead
        to the oldest waiting thread, if any, which commits what piled up. No
        thread ever competes for a lock held across I/O, so none is starved.
        """
        request = _Request(ops, wait)
        with self._mutex:
            self._pending.append(request)
            if not wait:
                return []
            lead = not self._committing
            if lead:
                self._committing = True
                batch, self._pending = self._pending, []
            else:
                request.wake = wake = _allocate_lock()
                wake.acquire()
        if not lead:
            request.wake.acquire()  # released by a leader: done, or our turn to lead
            if not request.done:
                with self._mutex:
                    batch, self._pending = self._pending, []
                lead = True
        if lead:
            self._lead(batch, request)
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def _lead(self, batch: list[_Request], me: _Request) -> None:
        try:
            self._commit(batch)
        finally:
            for request in batch:
                if request.wake is not None and request is not me:
                    request.wake.release()
            with self._mutex:
                for request in self._pending:
                    if request.wake is not None:
                        request.wake.release()  # the oldest waiter leads next
                        break
                else:
                    self._committing = False

    def flush(self) -> None:
        """Commit every write accepted with ``wait=False``."""
        if self._pending:
            self._write([])

    def _commit(self, batch: list[_Request]) -> None:
        """Commit a batch in one transaction; set every request's outcome."""
        try:
            self._transaction(batch)
        except JournalError as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # one bad request must not fail the others: retry them one by one
                for request in batch:
                    try:
                        self._transaction([request])
                    except JournalError as one:
                        request.error = one
        for request in batch:
            request.done = True
            if request.error is not None and not request.wait:
                self.lost_writes += 1
                from .._log import runner_log

                runner_log.error("journal write lost: %s", request.error)

    def _transaction(self, batch: Sequence[_Request]) -> None:
        conn = self._conn()
        self._begin(conn)
        try:
            for request in batch:
                results = []
                for op in request.ops:
                    if callable(op):
                        results.append(op(conn))
                    else:
                        results.append(conn.execute(op[0], op[1]).rowcount)
                request.results = results
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            for request in batch:
                request.results = None
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._error(exc, "write") from exc

    def _begin(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                # busy_timeout already waited; keep trying until lock_timeout, so that
                # "database is locked" never reaches a caller under ordinary contention.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    continue
                raise self._error(exc, "write") from exc
            except sqlite3.Error as exc:
                raise self._error(exc, "write") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read", write=False) from exc

    # -- the task's life ---------------------------------------------------------

    def enqueue(self, records: Sequence[TaskRecord]) -> None:
        if len(records) == 1:
            self._write([(INSERT, record_params(records[0]))])
            return
        params = [record_params(r) for r in records]
        self._write([lambda conn: conn.executemany(INSERT, params).rowcount])

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

        result: list[TaskRecord] = self._write([take])[0]
        return result

    def start(self, task_id: str, owner: str, now: float) -> bool:
        return bool(self._write([(START, (now, task_id, owner))])[0])

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
        e = (None, None, None) if error is None else (error.type, error.message, error.traceback)
        values = (state, result, *e, reason, now, task_id)
        op: Op = (FINISH_ANY, values) if owner is None else (FINISH_OWNED, (*values, owner))
        if not wait:
            self._write([op], wait=False)
            return True
        return bool(self._write([op])[0])

    def retry(self, task_id: str, owner: str, run_at: float, error: ErrorInfo | None) -> bool:
        e = (None, None, None) if error is None else (error.type, error.message, error.traceback)
        return bool(self._write([(RETRY, (run_at, *e, task_id, owner))])[0])

    def cancel(self, task_id: str, reason: str, now: float) -> bool:
        return bool(self._write([(CANCEL, (reason, now, task_id))])[0])

    def requeue(self, task_id: str, now: float) -> bool:
        return bool(self._write([(REQUEUE, (now, task_id))])[0])

    def delete(self, task_id: str) -> bool:
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
        # Cheap check first, outside the write lock: most of the time nobody died.
        candidates = [o for o in self.owners() if o.owner != owner]
        if not any(_is_dead(is_alive(o.owner), o.heartbeat, now, lease_timeout) for o in candidates):
            return Recovery()

        def take_over(conn: sqlite3.Connection) -> Recovery:
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
        return recovery

    def release(self, owner: str, now: float, *, keep: Sequence[str] = ()) -> int:
        keep = list(keep)
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

    def checkpoint(self, *, truncate: bool = True) -> tuple[int, int]:
        """Copy the WAL into the main file; return (WAL pages, pages copied).

        A commit checkpoints by itself only past ``_AUTOCHECKPOINT`` pages (a
        safety net): a checkpoint fsyncs, and one run inside a commit would
        stall every thread waiting for that commit. The runner's keeper thread
        instead calls this a few times a second (``truncate=False``, which runs
        alongside writers) and truncates the WAL file every 30 s.
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        try:
            _busy, wal, copied = self._conn().execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "checkpoint") from exc
        return int(wal), int(copied)

    def check(self, *, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` or the problems found."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            return [str(row[0]) for row in self._conn().execute(f"PRAGMA {pragma}")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]

    def schema_version(self) -> int:
        """The file's schema version (``PRAGMA user_version``)."""
        return int(self._read("PRAGMA user_version")[0][0])


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
    "AND state NOT IN ('succeeded', 'failed', 'cancelled', 'interrupted') UNION ALL "
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
