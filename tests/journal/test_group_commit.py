"""SQLiteJournal's group commit: deferred finishes, patient worker writes, lone statements.

These are the commits of a journal without an intake log (``intake=False``, or
``synchronous="full"``); with one, the same group commit carries the intake's
batches and every write that is not an enqueue, a start mark or a finish.
What is on disk is read through a second connection, as another process would.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offload import JournalWriteError
from offload.journal import SQLiteJournal, _file
from offload.testing.journal import ME, T0, record

from ..conftest import WAIT


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "j.sqlite3"


@pytest.fixture
def journal(path: Path) -> Iterator[SQLiteJournal]:
    journal = SQLiteJournal(path, intake=False)
    yield journal
    journal.close()


def on_disk(path: Path, task_id: str) -> str:
    """The row's state as another process sees it."""
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()[0])
    finally:
        conn.close()


def running(journal: SQLiteJournal, *ns: int) -> None:
    journal.enqueue([record(n, state="running", attempts=1) for n in ns])


def finish_later(journal: SQLiteJournal, n: int) -> None:
    journal.finish(f"t{n}", ME, "succeeded", T0 + 10, wait=False)


def statements(journal: SQLiteJournal) -> list[str]:
    """Trace the SQL this thread's connection runs from now on (the first word of each)."""
    seen: list[str] = []
    journal._conn().set_trace_callback(lambda sql: seen.append(sql.split()[0].upper()))
    return seen


def test_a_finish_nobody_waits_for_is_deferred_until_a_flush(journal: SQLiteJournal, path: Path) -> None:
    running(journal, 1)
    finish_later(journal, 1)
    journal.enqueue([record(2)])  # a request thread's commit does not take it along
    assert on_disk(path, "t1") == "running"
    journal.flush()
    assert on_disk(path, "t1") == "succeeded"


def test_deferred_finishes_ride_with_any_commit_once_defer_max_wait(journal: SQLiteJournal, path: Path) -> None:
    many = _file.DEFER_MAX
    running(journal, *range(many))
    for n in range(many - 1):
        finish_later(journal, n)
    journal.enqueue([record(100)])
    assert {on_disk(path, f"t{n}") for n in range(many - 1)} == {"running"}
    finish_later(journal, many - 1)
    journal.enqueue([record(101)])
    assert {on_disk(path, f"t{n}") for n in range(many)} == {"succeeded"}


def test_a_start_mark_carries_the_deferred_finishes(journal: SQLiteJournal, path: Path) -> None:
    running(journal, 1)
    journal.enqueue([record(2)])
    finish_later(journal, 1)
    assert journal.start("t2", ME, T0 + 11)
    assert (on_disk(path, "t1"), on_disk(path, "t2")) == ("succeeded", "running")


def test_a_lone_statement_is_its_own_transaction(journal: SQLiteJournal, path: Path) -> None:
    seen = statements(journal)
    journal.enqueue([record(1)])
    assert seen == ["INSERT"]  # autocommit: no BEGIN, no COMMIT
    seen.clear()
    journal.enqueue([record(2), record(3)])  # one operation, two rows: a transaction
    assert seen[0] == "BEGIN" and seen[-1] == "COMMIT"
    assert on_disk(path, "t1") == on_disk(path, "t3") == "queued"


def test_a_refused_lone_statement_changes_nothing_and_names_the_cause(journal: SQLiteJournal, path: Path) -> None:
    journal.enqueue([record(1)])
    with pytest.raises(JournalWriteError, match=r"j\.sqlite3: write failed: UNIQUE constraint failed: tasks\.id"):
        journal.enqueue([record(1)])
    assert journal.count_tasks() == 1


def test_a_lone_statement_waits_while_another_process_holds_the_write_lock(path: Path) -> None:
    journal = SQLiteJournal(path, busy_timeout=0.01, lock_timeout=WAIT, intake=False)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        done = threading.Event()
        errors: list[BaseException] = []

        def enqueue() -> None:
            try:
                journal.enqueue([record(1)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            done.set()

        thread = threading.Thread(target=enqueue)
        thread.start()
        assert not done.wait(0.1)  # retried past several busy timeouts, never "database is locked"
        other.execute("COMMIT")
        assert done.wait(WAIT)
        thread.join(WAIT)
        assert errors == []
        assert on_disk(path, "t1") == "queued"
    finally:
        other.close()
        journal.close()


def test_a_lone_statement_gives_up_after_lock_timeout_naming_the_path(path: Path) -> None:
    journal = SQLiteJournal(path, busy_timeout=0.01, lock_timeout=0.05, intake=False)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(JournalWriteError, match=r"j\.sqlite3: write failed: database is locked"):
            journal.enqueue([record(1)])
        other.execute("ROLLBACK")
        assert journal.count_tasks() == 0
    finally:
        other.close()
        journal.close()


class _Patient:
    """A worker thread's start mark, waiting (patiently) for another thread's commit."""

    def __init__(self, journal: SQLiteJournal, task_id: str) -> None:
        self.journal = journal
        self.result: list[Any] = []
        self.thread = threading.Thread(target=lambda: self.result.append(journal.start(task_id, ME, T0 + 12)))

    def start_and_wait_until_pending(self) -> None:
        self.thread.start()
        waiting = threading.Event()
        for _ in range(int(WAIT * 1000)):
            with self.journal._mutex:
                if any(r.patient for r in self.journal._pending):
                    return
            waiting.wait(0.001)
        raise AssertionError("the start mark never became a patient pending write")


@pytest.fixture
def leaders(journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(thread name, writes in the batch) of every commit from now on."""
    seen: list[tuple[str, int]] = []
    commit = journal._commit

    def recorded(batch: list[Any]) -> None:
        seen.append((threading.current_thread().name, len(batch)))
        commit(batch)

    monkeypatch.setattr(journal, "_commit", recorded)
    return seen


def test_a_workers_start_mark_rides_with_a_request_threads_commit(
    journal: SQLiteJournal, path: Path, leaders: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_file, "PATIENCE", WAIT)  # long enough never to run out here
    journal.enqueue([record(1)])  # this (request) thread enqueued just now
    leaders.clear()
    worker = _Patient(journal, "t1")
    worker.start_and_wait_until_pending()
    journal.enqueue([record(2)])  # carries the start mark
    worker.thread.join(WAIT)
    assert worker.result == [True]
    assert leaders == [("MainThread", 2)]  # one transaction, led by the request thread
    assert on_disk(path, "t1") == "running"


def test_a_patient_write_leads_itself_when_no_commit_comes(
    journal: SQLiteJournal, path: Path, leaders: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_file, "PATIENCE", 0.05)
    journal.enqueue([record(1)])
    leaders.clear()
    worker = _Patient(journal, "t1")
    worker.thread.start()
    worker.thread.join(WAIT)
    assert worker.result == [True]
    assert [name for name, _ in leaders] == [worker.thread.name]
    assert on_disk(path, "t1") == "running"


@pytest.mark.parametrize("last_enqueue", ["this thread's own", "long ago"])
def test_a_write_leads_at_once_unless_another_thread_just_enqueued(
    journal: SQLiteJournal, leaders: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch, last_enqueue: str
) -> None:
    monkeypatch.setattr(_file, "PATIENCE", WAIT)
    journal.enqueue([record(1)])
    if last_enqueue == "long ago":
        journal._last_enqueue = (threading.get_ident() + 1, time.monotonic() - 2 * WAIT)
    leaders.clear()

    def no_waiting() -> None:
        raise AssertionError("the write waited for another commit")

    monkeypatch.setattr(_file, "_allocate_lock", no_waiting)  # a waiting write sleeps on a new lock
    assert journal.start("t1", ME, T0 + 12)
    assert leaders == [("MainThread", 1)]
