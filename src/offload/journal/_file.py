"""An SQLite file shared by threads and processes: connections, group commit, fork safety.

The base of :class:`~offload.journal.SQLiteJournal` (which adds the Store
contract's statements). Settings, and why:

- WAL journal mode: readers never block the writer and a commit is one append.
- One connection per thread (SQLite connections are not shared between threads);
  a connection made before ``fork()`` is never used by the child.
- Every write is ``BEGIN IMMEDIATE``: the write lock is taken up front, so two
  processes never deadlock upgrading read locks; ``busy_timeout`` waits for it,
  and a write still refused after ``lock_timeout`` raises ``JournalWriteError``.
- Group commit: a writing thread appends its statements to a shared list; the
  first one to find no commit in progress commits everything pending in one
  transaction, then wakes the threads it committed for and hands the lead to
  the oldest waiting one. Request threads are batched instead of queued one by
  one behind each other or behind the workers.
- Writes nobody waits for (a worker's finish) are deferred until a flush asks
  for them, or until a few of them wait: see :meth:`SQLiteFile._write`.
- With an intake (``_writer.py``: enqueues, start marks and finishes durable in
  per-thread logs), every batch first applies the intake's records, and a write
  or a read first applies those of this process's other instances of the file.
- A lone statement is its own transaction (autocommit: one call into SQLite,
  not three); it takes the write lock as it starts, like ``BEGIN IMMEDIATE``.
- ``synchronous`` NORMAL (default) or FULL; see docs/journal.md for what each survives.
- The file is created with mode 0600 (SQLite gives its -wal and -shm files the same).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import JournalCorruptError, JournalError, JournalWriteError
from ._forkgate import gate
from ._writer import Intake, flush_local

SYNCHRONOUS = ("normal", "full")
_allocate_lock = threading.Lock
# WAL pages after which a commit checkpoints by itself (see checkpoint()).
_AUTOCHECKPOINT = 10_000
# Deferred writes after which any commit takes them along (see _write).
DEFER_MAX = 8
# Seconds a worker's write waits for another thread's commit to carry it (see _write).
PATIENCE = 0.0002

# An operation of a write: (sql, parameters) or a function run inside the transaction.
Op = tuple[str, Sequence[Any]] | Callable[[sqlite3.Connection], Any]


class _Request:
    __slots__ = ("done", "error", "ops", "patient", "results", "settle", "wait", "wake")

    def __init__(self, ops: Sequence[Op], wait: bool) -> None:
        self.ops = ops
        self.wait = wait
        self.wake: Any = None  # a held lock a waiting thread sleeps on
        self.patient = False  # waits for another thread's commit: never handed the lead
        self.results: list[Any] | None = None
        self.error: JournalError | None = None
        self.done = False
        # Intake records (see _writer.py): told the outcome, never counted lost (they are kept).
        self.settle: Callable[[JournalError | None], None] | None = None


class _ThreadConnection:
    """A thread's connection, closed when that thread's locals are dropped (it exited, or
    the journal went away), in the process that opened it: nothing is left for the
    garbage collector, which would warn about it (``ResourceWarning``, Python 3.13)."""

    __slots__ = ("conn", "pid")

    def __init__(self, conn: sqlite3.Connection, pid: int) -> None:
        self.conn, self.pid = conn, pid

    def __del__(self) -> None:
        if self.pid == os.getpid():  # never a connection inherited across fork()
            try:
                self.conn.close()
            except Exception:
                pass


class SQLiteFile:
    """Connections per thread and group commit over one SQLite file (see the module docstring)."""

    path: str
    synchronous: str
    busy_timeout: float
    lock_timeout: float

    def _init_file(self) -> None:
        """Set up the connection and group-commit state (after the options are set)."""
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._pending: list[_Request] = []
        self._deferred: list[_Request] = []  # accepted with wait=False, not yet in a batch
        self._flush_wanted = False  # a waiting request asks for the deferred ones too
        self._last_enqueue = (0, 0.0)  # (thread ident, time.monotonic()) of the latest enqueue's commit
        self._mutex = threading.Lock()
        self._committing = False
        self._closed = False
        self._pid = os.getpid()
        self._intake: Intake | None = None  # set by SQLiteJournal when it has one
        _journals.add(self)
        #: Writes accepted with ``wait=False`` that failed later (each is logged).
        self.lost_writes = 0

    def reset_after_fork(self) -> None:
        """In a fork()ed child: forget the parent's connections and group-commit state.

        Idempotent (once per process): the runner calls it before it starts its
        keeper in the child, and the fork handler calls it for every journal.
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        _inherited.extend(conn for _, conn in self._conns)
        self._conns = []
        self._local = threading.local()
        self._mutex = threading.Lock()  # may have been held by a parent thread at fork
        self._committing = False
        self._pending = []
        self._deferred = []  # the parent's: its process commits them
        self._flush_wanted = False
        self._last_enqueue = (0, 0.0)
        if self._intake is not None:
            self._intake.after_fork()

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
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            conn.execute(f"PRAGMA journal_size_limit = {_AUTOCHECKPOINT * 4096}")
        except sqlite3.Error as exc:
            conn.close()  # not kept anywhere: close it here (e.g. the file is not a database)
            raise self._error(exc, "opening") from exc
        local.pid, local.conn, local.owned = pid, conn, _ThreadConnection(conn, pid)
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
        if self._intake is not None:
            self._intake.close()
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        me = threading.current_thread()
        for thread, conn in conns:
            # Another live thread may be inside a statement on its connection right
            # now: closing it under that thread would crash the interpreter. It is
            # refused from now on (_conn raises) and closed when its thread exits
            # (its _ThreadConnection goes with the thread's locals, kept until then).
            if thread is me or not thread.is_alive():
                try:
                    with gate:
                        conn.close()
                except sqlite3.Error:
                    pass

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

    def _write(self, ops: Sequence[Op], *, wait: bool = True, flush: bool = False, patience: float = 0.0) -> list[Any]:
        """Add ``ops`` to the next transaction; unless ``wait`` is False, return once committed.

        The first thread to find no commit in progress is the leader: it takes
        everything pending and commits it in one transaction (outside the
        mutex). Meanwhile others append and sleep on a lock of their own. The
        leader wakes exactly the threads it committed for, then hands the lead
        to the oldest waiting thread, if any, which commits what piled up. No
        thread ever competes for a lock held across I/O, so none is starved.

        A write with ``wait=False`` (a worker's finish) is deferred: a batch takes
        the deferred writes along when one of its writes asks for a flush
        (``flush=True``, or no ``ops``) or once ``DEFER_MAX`` of them wait (and
        the runner's keeper flushes a few times a second). The commits request
        threads wait for stay small.

        ``patience`` (seconds) is for a worker's write while request threads are
        enqueueing (see :meth:`_patience`): rather than lead a transaction of its
        own, which the next enqueue would have to wait for, it waits that long for
        another thread's commit to carry it, and leads only if none came.
        """
        if self._closed:
            error = JournalError(f"journal {self.path} is closed")
            if wait:
                raise error
            self._lost(error)
            return []
        if wait and ops:  # another journal instance of this process may hold records about these rows
            flush_local(self.path, skip=self._intake)
        request = _Request(ops, wait)
        with self._mutex:
            if not wait:
                self._deferred.append(request)
                return []
            self._pending.append(request)
            if flush or not ops:
                self._flush_wanted = True
            lead = not self._committing and not patience
            if lead:
                self._committing = True
                batch = self._take_locked()
            else:
                request.wake = wake = _allocate_lock()
                wake.acquire()
                request.patient = bool(patience)
        if not lead:
            if not request.patient:
                request.wake.acquire()  # released by a leader: done, or our turn to lead
            elif not request.wake.acquire(timeout=patience):
                with self._mutex:
                    request.patient = False  # from now on it may be handed the lead
                    lead = not request.done and not self._committing
                    if lead:  # nobody took it and nobody is committing
                        self._committing = True
                        batch = self._take_locked()
                if not lead and not request.done:
                    request.wake.acquire()  # a leader has it, or hands us the lead
            if not lead and not request.done:
                with self._mutex:
                    batch = self._take_locked()
                lead = True
        if lead:
            self._lead(batch, request)
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def _take_locked(self) -> list[_Request]:
        """The next batch: the intake records, every waiting write, and the deferred ones if a flush is due."""
        batch, self._pending = self._pending, []
        if self._deferred and (self._flush_wanted or len(self._deferred) >= DEFER_MAX):
            batch[:0] = self._deferred  # the older writes first
            self._deferred = []
        self._flush_wanted = False
        taken = self._intake.take() if self._intake is not None else None
        if taken is not None:  # accepted before any of these: applied first
            records = _Request([taken[0]], False)
            records.settle = taken[1]
            batch.insert(0, records)
        return batch

    def _lead(self, batch: list[_Request], me: _Request) -> None:
        try:
            self._commit(batch)
        finally:
            for request in batch:
                if request.wake is not None and request is not me:
                    request.wake.release()
            with self._mutex:
                for request in self._pending:
                    if request.wake is not None and not request.patient:
                        request.wake.release()  # the oldest waiter leads next
                        break
                else:
                    self._committing = False

    def _enqueued(self) -> None:
        """Note that this thread's enqueue just committed (see :meth:`_patience`)."""
        self._last_enqueue = (threading.get_ident(), time.monotonic())

    def _patience(self) -> float:
        """How long a worker's write may wait for another thread's commit: ``PATIENCE`` while
        another thread has just enqueued (its next enqueue is likely near), else 0."""
        enqueuer, at = self._last_enqueue
        if enqueuer != threading.get_ident() and time.monotonic() - at <= PATIENCE:
            return PATIENCE
        return 0.0

    def flush(self) -> None:
        """Commit every write accepted with ``wait=False``, and apply the intake records."""
        if self._pending or self._deferred or (self._intake is not None and self._intake.pending()):
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
                        if request.settle is not None:
                            # Intake records could not be applied: what came after them may
                            # depend on them (a cancel of a task they enqueue). Fail it all.
                            for later in batch:
                                later.error = later.error or one
                            break
        for request in batch:
            request.done = True
            if request.settle is not None:
                request.settle(request.error)
            elif request.error is not None and not request.wait:
                self._lost(request.error)

    def _lost(self, error: JournalError) -> None:
        """A write nobody waited for failed: count it and log it (nobody else will)."""
        self._lost_record(str(error))

    def _lost_record(self, message: str) -> None:
        self.lost_writes += 1
        from .._log import runner_log

        runner_log.error("journal write lost (%d so far): %s", self.lost_writes, message)

    def _transaction(self, batch: Sequence[_Request]) -> None:
        with gate:
            self._transaction_inside(batch)

    def _transaction_inside(self, batch: Sequence[_Request]) -> None:
        if not any(request.ops for request in batch):
            for request in batch:
                request.results = []
            return  # a flush that found nothing to write
        conn = self._conn()
        lone = _lone_statement(batch)
        if lone is not None:
            # Its own transaction (autocommit): one call into SQLite, not three.
            count = self._until_unlocked(lambda: conn.execute(lone[0], lone[1]).rowcount)
            for request in batch:
                request.results = [count] if request.ops else []
            return
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
        self._until_unlocked(lambda: conn.execute("BEGIN IMMEDIATE"))

    def _until_unlocked(self, write: Callable[[], Any]) -> Any:
        """Run ``write`` (one that takes the write lock), retrying while another process holds the lock.

        A lone write statement, like ``BEGIN IMMEDIATE``, takes the lock as it
        starts and changes nothing when refused, so it can simply be tried again.
        """
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return write()
            except sqlite3.OperationalError as exc:
                # busy_timeout already waited; keep trying until lock_timeout, so that
                # "database is locked" never reaches a caller under ordinary contention.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    continue
                raise self._error(exc, "write") from exc
            except sqlite3.Error as exc:
                raise self._error(exc, "write") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        flush_local(self.path)  # this process reads its own writes (its intake records)
        try:
            with gate:
                return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read", write=False) from exc

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
            with gate:
                _busy, wal, copied = self._conn().execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "checkpoint") from exc
        return int(wal), int(copied)

    def check(self, *, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` or the problems found."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            with gate:
                return [str(row[0]) for row in self._conn().execute(f"PRAGMA {pragma}")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]

    def schema_version(self) -> int:
        """The file's schema version (``PRAGMA user_version``)."""
        return int(self._read("PRAGMA user_version")[0][0])


def _lone_statement(batch: Sequence[_Request]) -> tuple[str, Sequence[Any]] | None:
    """The batch's only operation, if it is one SQL statement (not a function, not several)."""
    found = None
    for request in batch:
        for op in request.ops:
            if found is not None or callable(op):
                return None
            found = op
    return found


# Every journal of this process, to reset them in a fork()ed child.
_journals: weakref.WeakSet[SQLiteFile] = weakref.WeakSet()
# Connections inherited from the parent: never used, never closed by the child (closing
# them could disturb the parent's locks); kept here so garbage collection does not close them.
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
