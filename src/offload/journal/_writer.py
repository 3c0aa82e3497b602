"""The intake: accepted journal writes on their way from the intake log to the SQLite file.

``SQLiteJournal`` with ``synchronous="normal"`` (the default) does not make a
request thread or a worker wait for an SQLite commit for the writes of a
task's ordinary life: an enqueue, a start mark, a finish. Each is appended to
the writing thread's log in the journal's intake directory (:mod:`._intake`,
durable once the append returns) and kept in memory; a writer thread applies
what has piled up to the SQLite file in one transaction (:mod:`._apply`),
whatever the number of threads that wrote. Every other write (claim, retry, cancel,
recovery...) goes through the group commit as before, and its transaction
first applies every intake record accepted before it: the SQLite file never
sees a task's writes out of order.

The transaction that applies records also stores how far it got (the log's
*applied position*, table ``intake``). A process that finds the log of a dead
process applies its records past that position (:mod:`._replay`): nothing that
was accepted is lost, nothing is applied twice.

Reads in this process first apply the records of its own journals, so it reads
its own writes; other processes see them once the writer has applied them
(about a millisecond at a moderate load; a saturated process gives the writer
the GIL less often, and it applies larger batches, a few hundred ms apart).

If the SQLite file cannot be written (disk full, read-only, damaged), the
records stay in the log and in memory, the writer retries every second, and
new enqueues and start marks try a commit first, so they raise the file's
error instead of being accepted while it fails.
"""

from __future__ import annotations

import errno
import functools
import itertools
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
from ._intake import IntakeLog, Mailbox, intake_dir, mailbox_path, remove_log, safe_name, unlink_quietly
from ._owner import owner_id

if TYPE_CHECKING:
    from ._file import SQLiteFile

#: Seconds between the writer's tries while the SQLite file cannot be written.
RETRY_INTERVAL = 1.0
#: Seconds between two log lines saying the file still cannot be written.
REPORT_INTERVAL = 10.0
#: Records a thread may have accepted and not yet applied before it waits for a commit.
MAX_PENDING = 20_000

UPSERT_POSITION = (
    "INSERT INTO intake (log, owner, applied) VALUES (?, ?, ?) "
    "ON CONFLICT (log) DO UPDATE SET applied = excluded.applied"
)
LIVE = ("queued", "scheduled", "retrying", "running")

#: Logs appended to by a live journal instance of this process (never replayed by this process).
live_logs: set[str] = set()
# Journal instances of this process with an intake, to apply their records before a read.
_intakes: weakref.WeakSet[Intake] = weakref.WeakSet()
# Open mailboxes of this process, per path, and how many instances use each.
_mailboxes: dict[str, tuple[Mailbox, int]] = {}
_mailboxes_lock = threading.Lock()


class _Channel:
    """One thread's share of an intake: a log of its own, appended to without a lock."""

    __slots__ = ("applied", "log", "ops", "position", "thread")

    def __init__(self, log: IntakeLog, thread: threading.Thread) -> None:
        self.log = log
        self.thread = thread
        #: Accepted records not applied yet, oldest first.
        self.ops: list[Op] = []
        self.position = 0  # in the log, after the newest record accepted
        self.applied = 0  # in the log, after the newest record committed to the file


Op = tuple[int, str, str, int]  # (sequence number, kind, JSON text, position after it in its log)
Taken = list[tuple[_Channel, list[Op]]]


class Intake:
    """One journal instance's intake (see the module docstring).

    Every thread that writes gets a channel: its own log and list of records,
    so that appends from many threads never wait for one another (a shared lock
    taken three times per task made threads queue behind one preempted by the
    GIL). A sequence number taken from one counter orders the records of all
    channels: the writer takes, from every channel, the records numbered below
    a number it draws first, which holds everything that happened before
    anything it takes; replay after a crash sorts a process's records by it.
    """

    def __init__(self, journal: SQLiteFile) -> None:
        self.journal = journal
        self.directory = intake_dir(journal.path)
        self._reset()
        _intakes.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # the list of channels, and opening
        self._channels: list[_Channel] = []
        self._local = threading.local()
        self._sequence = itertools.count(1)
        #: Rows this instance knows are held, by id: the owner. A start mark of a held row
        #: needs no commit first; any other goes through a commit that checks the row.
        self.held: dict[str, str] = {}
        #: The error of the last failed apply, until one succeeds.
        self.broken: JournalError | None = None
        self.owner = owner_id()
        self._prefix = f"{safe_name(self.owner)}-{os.urandom(4).hex()}"
        self._mailbox: Mailbox | None = None
        self._seen = bytes(8)
        self._many: bool | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reported = 0.0

    def after_fork(self) -> None:
        """In a fork()ed child: the parent's records, logs and mailbox stay the parent's."""
        self._reset()

    def pending(self) -> bool:
        """Whether some accepted record is not committed to the file yet."""
        return any(channel.position != channel.applied for channel in self._channels)

    # -- appending -------------------------------------------------------------

    def ready(self) -> None:
        """Open the mailbox and start the writer (before this instance holds its first row)."""
        if self._thread is None:
            with self._lock:
                self._open_locked()

    def append(self, kind: str, text: str, held: tuple[str, str | None] | None = None) -> None:
        """Append a record; once this returns it is durable. ``held``: (id, owner) to note as held.

        Raises:
            JournalWriteError: the intake log cannot be written (nothing was accepted).
        """
        channel: _Channel | None = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._new_channel()
        sequence = next(self._sequence)
        try:
            position = channel.log.append(f"{kind}{sequence}|{text}".encode("ascii"))
        except OSError as exc:
            raise self._error(exc) from exc
        channel.position = position
        channel.ops.append((sequence, kind, text, position))
        if held is not None and held[1] is not None:
            self.held[held[0]] = held[1]
        if not self._wake.is_set():
            self._wake.set()
        if len(channel.ops) > MAX_PENDING:
            self._catch_up()

    def _catch_up(self) -> None:
        """The writer falls behind (the file is slow, or locked by another process): this thread
        waits for a commit, so that what is accepted and not applied stays bounded."""
        try:
            self.journal._write([])
        except JournalError:
            pass  # kept, and said; check() makes the next write raise

    def _new_channel(self) -> _Channel:
        me = threading.current_thread()
        with self._lock:
            self._open_locked()
            for channel in self._channels:
                if not channel.thread.is_alive():  # its thread exited: appends nothing any more
                    channel.thread = me
                    break
            else:
                log = IntakeLog(self.directory, f"{self._prefix}-{len(self._channels)}", self.owner)
                channel = _Channel(log, me)
                self._channels = [*self._channels, channel]  # readers iterate a list never changed in place
                live_logs.add(channel.log.name)
        self._local.channel = channel
        return channel

    def _open_locked(self) -> None:
        if self._stopping:
            raise JournalError(f"journal {self.journal.path} is closed")
        if self._thread is not None:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._mailbox = _open_mailbox(mailbox_path(self.directory, self.owner))
        except OSError as exc:
            raise self._error(exc) from exc
        self._seen = self._mailbox.token()
        self._thread = threading.Thread(target=self._run, name="offload-journal-writer", daemon=True)
        self._thread.start()

    def _error(self, exc: OSError) -> JournalWriteError:
        full = " (disk full)" if exc.errno == errno.ENOSPC else ""
        return JournalWriteError(f"journal {self.journal.path}: its intake log in {self.directory} cannot be "
                                 f"written{full}: {exc}")  # fmt: skip

    def check(self) -> None:
        """While the file cannot be written, try a commit first: raise its error rather than accept."""
        if self.broken is not None:
            self.journal._write([])

    # -- applying --------------------------------------------------------------

    def take(self) -> tuple[Callable[[sqlite3.Connection], Any], Callable[[JournalError | None], None]] | None:
        """The records to apply in the next transaction: (the operation, what to do after it)."""
        cut = next(self._sequence)  # every record before any taken one is numbered below it
        taken: Taken = []
        for channel in self._channels:
            ops = channel.ops  # its thread appends at the end meanwhile; this takes from the front
            count = len(ops)
            while count and ops[count - 1][0] > cut:
                count -= 1
            if count:
                chunk = ops[:count]
                del ops[:count]
                taken.append((channel, chunk))
        if not taken:
            return None
        return functools.partial(self._apply, taken), functools.partial(self._settle, taken)

    def _apply(self, taken: Taken, conn: sqlite3.Connection) -> None:
        if self._many is None:
            self._many = set_based(conn)
        records = sorted(op for _, chunk in taken for op in chunk) if len(taken) > 1 else taken[0][1]
        apply(conn, [(kind, text) for _, kind, text, _ in records], self.journal._lost_record, many=self._many)
        for channel, chunk in taken:
            conn.execute(UPSERT_POSITION, (channel.log.name, self.owner, chunk[-1][3]))

    def _settle(self, taken: Taken, error: JournalError | None) -> None:
        if error is None:
            self.broken = None
            for channel, chunk in taken:
                channel.applied = chunk[-1][3]
                for path in channel.log.finished(channel.applied):
                    unlink_quietly(path)
            return
        for channel, chunk in taken:
            channel.ops[:0] = chunk  # kept, in order, for the next try
        self.broken = error
        now = time.monotonic()
        if now - self._reported >= REPORT_INTERVAL:
            self._reported = now
            runner_log.error(
                "journal %s: %d accepted write(s) are not in the file yet (%s); they are kept in its intake "
                "log %s and applied as soon as the file can be written",
                self.journal.path,
                sum(len(channel.ops) for channel in self._channels),
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
            if self.pending():
                try:
                    self.journal._write([])
                except JournalError:
                    pass  # _settle kept the records and said why
                except Exception:  # pragma: no cover - a bug in offload itself
                    runner_log.exception("journal %s: the writer failed", self.journal.path)
            try:
                self._maintain()
            except Exception:  # pragma: no cover - a bug in offload itself
                runner_log.exception("journal %s: the writer failed to prepare segments", self.journal.path)

    def _maintain(self) -> None:
        """Between commits: unmap full segments and prepare the next ones."""
        for channel in self._channels:
            log = channel.log
            for old in log.retired():
                old.close()
            index = log.reserve_spare()
            if index is not None:
                try:
                    made: tuple[Any, int] | None = log.create(index)
                except OSError:
                    made = None  # the append that needs a segment makes it, or says why it cannot
                log.add_spare(index, made)

    # -- rows changed by other processes -----------------------------------------

    def noticed(self) -> bool:
        """Whether another process changed a row of this process since this instance last looked."""
        mailbox = self._mailbox
        try:
            return mailbox is not None and mailbox.token() != self._seen
        except ValueError:  # closed meanwhile (the journal is closing)
            return False

    def reconcile(self) -> None:
        """Forget the held rows another process cancelled or took over (see ``SQLiteJournal.start``)."""
        assert self._mailbox is not None
        token = self._mailbox.token()
        held = list(self.held.items())
        current: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(held), 500):
            chunk = [task_id for task_id, _ in held[start : start + 500]]
            sql = f"SELECT id, owner, state FROM tasks WHERE id IN ({','.join('?' * len(chunk))})"
            current.update((row[0], row[1:]) for row in self.journal._read(sql, chunk))
        for task_id, owner in held:
            row = current.get(task_id)
            if row is None or row[0] != owner or row[1] not in LIVE:
                self.held.pop(task_id, None)
        self._seen = token

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Stop the writer; remove the logs whose records are all applied (after a flush)."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        for channel in self._channels:
            channel.log.close()  # first: an append from now on fails, and is counted lost
        left = sum(len(channel.ops) for channel in self._channels)
        applied = [channel for channel in self._channels if not channel.ops]
        for channel in applied:
            remove_log(self.directory, channel.log.name)
        for channel in self._channels:
            live_logs.discard(channel.log.name)
        if left:
            runner_log.warning(
                "journal %s: %d accepted write(s) could not be applied before closing; they stay in %s "
                "and the next process to open the journal applies them",
                self.journal.path,
                left,
                self.directory,
            )
        if applied:
            try:
                self.journal._write([("DELETE FROM intake WHERE log = ?", (c.log.name,)) for c in applied])
            except JournalError:
                pass  # positions without segments: harmless, removed by the next recovery
        if self._mailbox is not None:
            _close_mailbox(self._mailbox)
            self._mailbox = None


def flush_local(path: str, skip: Intake | None = None) -> None:
    """Apply the pending records of this process's journals on ``path`` but ``skip``'s (before a
    read of it, or a write that may concern their rows)."""
    for intake in list(_intakes):
        # Also while a commit of its records is under way: _write orders after it.
        if intake is not skip and intake.journal.path == path and not intake._stopping and intake.pending():
            try:
                intake.journal._write([])
            except JournalError:
                pass  # kept and reported; the read goes on with what the file has


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
            mailbox.close()
        else:
            _mailboxes[mailbox.path] = (mailbox, users - 1)


def _after_fork_in_child() -> None:
    # The parent's (each journal resets its own intake: SQLiteFile.reset_after_fork).
    live_logs.clear()
    _mailboxes.clear()
