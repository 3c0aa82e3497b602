"""The intake: accepted journal writes on their way from the intake log to the SQLite file.

``SQLiteJournal`` with ``synchronous="normal"`` (the default) does not make a
request thread or a worker wait for an SQLite commit for the writes of a
task's ordinary life: an enqueue, a start mark, a finish. Each is appended to
the journal instance's intake log (:mod:`._intake`, durable once the append
returns) and to :attr:`Intake.ops` in memory; a writer thread applies what has
piled up to the SQLite file in one transaction (:mod:`._apply`), whatever the
number of threads that wrote. Every other write (claim, retry, cancel,
recovery...) goes through the group commit as before, and its transaction
first applies every intake record accepted before it: the SQLite file never
sees a task's writes out of order.

The transaction that applies records also stores how far it got (the log's
*applied position*, table ``intake``). A process that finds the log of a dead
process (recovery, or opening the journal) applies its records past that
position: nothing that was accepted is lost, nothing is applied twice.

Reads in this process first apply the records of its own journals, so it reads
its own writes; other processes see them once the writer has applied them,
normally within a millisecond or two.

If the SQLite file cannot be written (disk full, read-only, damaged), the
records stay in the log and in memory, the writer retries every second, and
new enqueues and start marks try a commit first, so they raise the file's
error instead of being accepted while it fails.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import JournalError, JournalWriteError
from .._log import runner_log
from ._apply import apply, set_based
from ._intake import IntakeLog, Mailbox, mailbox_path, read_records, remove_log, safe_name
from ._owner import owner_id

if TYPE_CHECKING:
    from ._file import SQLiteFile

#: Seconds between the writer's tries while the SQLite file cannot be written.
RETRY_INTERVAL = 1.0
#: Seconds between two log lines saying the file still cannot be written.
REPORT_INTERVAL = 10.0
#: Records applied per transaction when replaying a dead process's log.
REPLAY_CHUNK = 5000

#: JSON of an intake record: ASCII only, compact.
dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode

UPSERT_POSITION = (
    "INSERT INTO intake (log, owner, applied) VALUES (?, ?, ?) "
    "ON CONFLICT (log) DO UPDATE SET applied = excluded.applied"
)
LIVE = ("queued", "scheduled", "retrying", "running")

# Logs appended to by a live journal instance of this process (never replayed by this process).
_live: set[str] = set()
# Journal instances of this process with an intake, to apply their records before a read.
_intakes: weakref.WeakSet[Intake] = weakref.WeakSet()
# Open mailboxes of this process, per path, and how many instances use each.
_mailboxes: dict[str, tuple[Mailbox, int]] = {}
_mailboxes_lock = threading.Lock()


class Intake:
    """One journal instance's intake (see the module docstring)."""

    def __init__(self, journal: SQLiteFile) -> None:
        self.journal = journal
        self.directory = journal.path + "-intake"
        self._reset()
        _intakes.add(self)

    def _reset(self) -> None:
        self.lock = threading.Lock()
        #: Accepted records not yet applied: (kind, JSON text), oldest first.
        self.ops: list[tuple[str, str]] = []
        self.position = 0  # in the log, after the newest record accepted
        self.applied = 0  # in the log, after the newest record committed to the file
        #: Rows this instance knows are held, by id: the owner. A start mark of a held row
        #: needs no commit first; any other goes through a commit that checks the row.
        self.held: dict[str, str] = {}
        #: The error of the last failed apply, until one succeeds.
        self.broken: JournalError | None = None
        self.owner = owner_id()
        self.name = f"{safe_name(self.owner)}-{os.urandom(4).hex()}"
        self._log: IntakeLog | None = None
        self._mailbox: Mailbox | None = None
        self._seen = bytes(8)
        self._many: bool | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reported = 0.0

    def after_fork(self) -> None:
        """In a fork()ed child: the parent's records, log and mailbox stay the parent's."""
        self._reset()

    # -- appending -------------------------------------------------------------

    def ready(self) -> None:
        """Open the log and the mailbox (before this instance holds its first row)."""
        if self._log is None:
            with self.lock:
                if self._log is None:
                    self._open_locked()

    def append(self, kind: str, text: str, held: tuple[str, str | None] | None = None) -> None:
        """Append a record; once this returns it is durable. ``held``: (id, owner) to note as held.

        Raises:
            JournalWriteError: the intake log cannot be written (nothing was accepted).
        """
        data = (kind + text).encode("ascii")
        with self.lock:
            log = self._log if self._log is not None else self._open_locked()
            try:
                self.position = log.append(data)
            except OSError as exc:
                raise self._error(exc) from exc
            self.ops.append((kind, text))
            if held is not None and held[1] is not None:
                self.held[held[0]] = held[1]
        if not self._wake.is_set():
            self._wake.set()

    def _open_locked(self) -> IntakeLog:
        if self._stopping:
            raise JournalError(f"journal {self.journal.path} is closed")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._mailbox = _open_mailbox(mailbox_path(self.directory, self.owner))
        except OSError as exc:
            raise self._error(exc) from exc
        self._seen = self._mailbox.token()
        self._log = IntakeLog(self.directory, self.name, self.owner)
        _live.add(self.name)
        self._thread = threading.Thread(target=self._run, name="offload-journal-writer", daemon=True)
        self._thread.start()
        return self._log

    def _error(self, exc: OSError) -> JournalWriteError:
        return JournalWriteError(f"journal {self.journal.path}: its intake log in {self.directory} cannot be "
                                 f"written: {exc}")  # fmt: skip

    def check(self) -> None:
        """While the file cannot be written, try a commit first: raise its error rather than accept."""
        if self.broken is not None:
            self.journal._write([])

    # -- applying --------------------------------------------------------------

    def take(self) -> tuple[Callable[[sqlite3.Connection], Any], Callable[[JournalError | None], None]] | None:
        """The records to apply in the next transaction: (the operation, what to do after it)."""
        with self.lock:
            if not self.ops:
                return None
            ops, self.ops = self.ops, []
            position = self.position
        return functools.partial(self._apply, ops, position), functools.partial(self._settle, ops, position)

    def _apply(self, ops: list[tuple[str, str]], position: int, conn: sqlite3.Connection) -> None:
        if self._many is None:
            self._many = set_based(conn)
        apply(conn, ops, self.journal._lost_record, many=self._many)
        conn.execute(UPSERT_POSITION, (self.name, self.owner, position))

    def _settle(self, ops: list[tuple[str, str]], position: int, error: JournalError | None) -> None:
        if error is None:
            self.broken = None
            self.applied = position
            with self.lock:
                done = self._log.finished(position) if self._log is not None else []
            for path in done:
                _unlink(path)
            return
        with self.lock:
            self.ops[:0] = ops  # kept, in order, for the next try
        self.broken = error
        now = time.monotonic()
        if now - self._reported >= REPORT_INTERVAL:
            self._reported = now
            runner_log.error(
                "journal %s: %d accepted write(s) are not in the file yet (%s); they are kept in its intake "
                "log %s and applied as soon as the file can be written",
                self.journal.path,
                len(self.ops),
                error,
                self.directory,
            )

    def _run(self) -> None:
        while True:
            if self.broken is not None:
                self._stop.wait(RETRY_INTERVAL)  # a failing file is retried at a bounded rate
            else:
                self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            if self.ops:
                try:
                    self.journal._write([])
                except JournalError:
                    pass  # _settle kept the records and said why
                except Exception:  # pragma: no cover - a bug in offload itself
                    runner_log.exception("journal %s: the writer failed", self.journal.path)
            self._maintain()

    def _maintain(self) -> None:
        """Between commits: unmap full segments, and prepare the next one before an append needs it."""
        with self.lock:
            log = self._log
            if log is None:
                return
            maps = log.retired()
            index = log.reserve_spare()
        for old in maps:
            old.close()
        if index is None:
            return
        try:
            made: tuple[Any, int] | None = log.create(index)
        except OSError:
            made = None  # the append that needs a segment makes it, or says why it cannot
        with self.lock:
            if self._log is log:
                log.add_spare(index, made)
                return
        if made is not None:  # closed meanwhile
            made[0].close()
            _unlink(log.segment_path(index))

    # -- rows changed by other processes -----------------------------------------

    def noticed(self) -> bool:
        """Whether another process changed a row of this process since this instance last looked."""
        mailbox = self._mailbox
        return mailbox is not None and mailbox.token() != self._seen

    def reconcile(self) -> None:
        """Forget the held rows another process cancelled or took over (see ``SQLiteJournal.start``)."""
        assert self._mailbox is not None
        token = self._mailbox.token()
        with self.lock:
            held = list(self.held.items())
        current: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(held), 500):
            chunk = [task_id for task_id, _ in held[start : start + 500]]
            sql = f"SELECT id, owner, state FROM tasks WHERE id IN ({','.join('?' * len(chunk))})"
            current.update((row[0], row[1:]) for row in self.journal._read(sql, chunk))
        with self.lock:
            for task_id, owner in held:
                row = current.get(task_id)
                if row is None or row[0] != owner or row[1] not in LIVE:
                    self.held.pop(task_id, None)
        self._seen = token

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Stop the writer; remove the log if everything in it is applied (after a flush)."""
        self._stopping = True
        self._wake.set()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        with self.lock:
            log, self._log = self._log, None
            left = len(self.ops)
        if log is not None:
            log.close(remove=not left)
            if left:
                runner_log.warning(
                    "journal %s: %d accepted write(s) could not be applied before closing; they stay in %s "
                    "and the next process to open the journal applies them",
                    self.journal.path,
                    left,
                    self.directory,
                )
            else:
                try:
                    self.journal._write([("DELETE FROM intake WHERE log = ?", (self.name,))])
                except JournalError:
                    pass  # a row without segments: harmless, removed by the next recovery
        if self._mailbox is not None:
            _close_mailbox(self._mailbox)
            self._mailbox = None
        _live.discard(self.name)


def flush_local(path: str) -> None:
    """Apply the pending records of this process's journals on ``path`` (before a read of it)."""
    for intake in list(_intakes):
        # Also while a commit of its records is under way: _write orders after it.
        if intake.position != intake.applied and intake.journal.path == path and not intake._stopping:
            try:
                intake.journal._write([])
            except JournalError:
                pass  # kept and reported; the read goes on with what the file has


# -- replaying the logs of dead processes ---------------------------------------------


def dead_logs(found: dict[str, str], is_dead: Callable[[str], bool]) -> dict[str, str]:
    """Of the logs ``found`` (name -> owner id, see ``_intake.logs``), those nobody appends to any more."""
    me = owner_id()
    return {name: owner for name, owner in found.items() if name not in _live and (owner == me or is_dead(owner))}


def replay(conn: sqlite3.Connection, directory: str, name: str, owner: str, lost: Callable[[str], None]) -> int:
    """Apply a dead log's records past its applied position (inside the caller's transaction).

    Returns the records applied. The segments are the caller's to remove after the commit.
    """
    row = conn.execute("SELECT applied FROM intake WHERE log = ?", (name,)).fetchone()
    position = int(row[0]) if row else 0
    many = set_based(conn)
    ops: list[tuple[str, str]] = []
    applied = 0
    for end, data in read_records(directory, name, position):
        ops.append((chr(data[0]), data[1:].decode("ascii")))
        position = end
        if len(ops) >= REPLAY_CHUNK:
            apply(conn, ops, lost, many=many)
            applied += len(ops)
            ops = []
    apply(conn, ops, lost, many=many)
    applied += len(ops)
    conn.execute(UPSERT_POSITION, (name, owner, position))
    return applied


def forget_logs(directory: str, names: list[str]) -> None:
    """Remove replayed logs' segments (after the commit that recorded their position)."""
    for name in names:
        remove_log(directory, name)


def _open_mailbox(path: str) -> Mailbox:
    with _mailboxes_lock:
        mailbox, users = _mailboxes.get(path, (None, 0))
        if mailbox is None:
            mailbox = Mailbox(path)
        _mailboxes[path] = (mailbox, users + 1)
        return mailbox


def _close_mailbox(mailbox: Mailbox) -> None:
    with _mailboxes_lock:
        _, users = _mailboxes.get(mailbox.path, (mailbox, 1))
        if users <= 1:
            _mailboxes.pop(mailbox.path, None)
            mailbox.close(remove=True)
        else:
            _mailboxes[mailbox.path] = (mailbox, users - 1)


def _after_fork_in_child() -> None:
    # The parent's (each journal resets its own intake: SQLiteFile.reset_after_fork).
    _live.clear()
    _mailboxes.clear()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)
