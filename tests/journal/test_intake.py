"""The intake: writes durable in per-thread logs before the SQLite file has them.

What is in the file is read through a connection of its own, as another process would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from offload import JournalWriteError
from offload._handle import ErrorInfo
from offload.journal import SQLiteJournal, TaskRecord, _apply, _intake, _owner, _replay, _sqlite, _writer
from offload.testing.journal import ME, T0, record

from ..conftest import WAIT


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "j.sqlite3"


@pytest.fixture
def journal(path: Path) -> Iterator[SQLiteJournal]:
    journal = SQLiteJournal(path)
    yield journal
    journal.close()


def in_file(path: Path, sql: str = "SELECT id, state FROM tasks ORDER BY seq") -> list[tuple[object, ...]]:
    """What another process reads in the file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the file's write lock, as a busy process would; released on exit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for something another thread does."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.005)):
        if condition():
            return
        pause.wait(0.005)
    raise AssertionError(f"timed out waiting until {what}")


def dead_owner() -> str:
    """An owner id of this host whose process cannot exist (its pid is past the kernel's limit)."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except OSError:
        pid_max = 4_194_304
    owner = f"{_owner._host()}:{pid_max + 1}:12345"
    assert _owner.is_alive(owner) is False
    return owner


def segments(path: Path) -> list[str]:
    directory = Path(f"{path}-intake")
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".notice")) if directory.exists() else []


# -- durability ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, threading
    from offload.journal import SQLiteJournal, TaskRecord

    journal = SQLiteJournal(sys.argv[1], busy_timeout=0.01, lock_timeout=3600.0)
    for n in range(int(sys.argv[2])):
        journal.enqueue([TaskRecord(id=f"k{n}", name="tests.job", payload="[[],{}]", owner=None)])
    print("enqueued", flush=True)
    threading.Event().wait(3600)
    """
)


@pytest.mark.subprocess
def test_an_enqueue_is_durable_in_the_intake_before_the_file_has_it(path: Path) -> None:
    SQLiteJournal(path).close()
    with write_locked(path):  # the child's writer can apply nothing
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "500"], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "enqueued"
        assert in_file(path) == []  # returned, and not in the file
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=WAIT)
    assert child.returncode == -signal.SIGKILL
    reader = SQLiteJournal(path)  # opening applies what the dead process accepted
    try:
        assert [row[0] for row in in_file(path)] == [f"k{n}" for n in range(500)]  # all, in order
        assert reader.check() == ["ok"]
        assert in_file(path, "SELECT count(*) FROM intake") == [(0,)]
    finally:
        reader.close()
    assert segments(path) == []


def test_a_record_cut_short_is_ignored_and_what_came_before_it_is_read(tmp_path: Path) -> None:
    log = _intake.IntakeLog(str(tmp_path), "log", "host:1:2")
    for n in range(3):
        log.append(f"e{n}|[{n}]".encode())
    log.close()
    (segment,) = tmp_path.glob("log.*")
    data = bytearray(segment.read_bytes())
    head = len(_intake.MAGIC) + 2 + len(b"host:1:2")
    third = head + 2 * (8 + len(b"e0|[0]"))
    data[third + 8 + 2] ^= 0xFF  # a byte of the last record's data differs from what its CRC says
    segment.write_bytes(bytes(data))
    assert [record for _, record in _intake.read_records(str(tmp_path), "log", 0)] == [b"e0|[0]", b"e1|[1]"]
    assert _intake.logs(str(tmp_path)) == {"log": "host:1:2"}


def test_times_and_text_round_trip_exactly_through_the_intake(journal: SQLiteJournal) -> None:
    rng = random.Random(7)
    rows = [
        dataclasses.replace(
            record(n, created_at=T0 + rng.random() * 1e6, run_at=rng.random() * 1e9, queue="é"), payload='[["日本"],{}]'
        )
        for n in range(300)
    ]
    for row in rows:
        journal.enqueue([row])
    assert [journal.fetch(row.id) for row in rows] == rows


def test_error_text_that_is_not_unicode_is_stored_escaped(journal: SQLiteJournal) -> None:
    journal.enqueue([record(1)])
    assert journal.start("t1", ME, T0)
    bad = ErrorInfo("builtins.ValueError", "bad \udc80 byte", "Traceback\n  \udcff\n")
    assert journal.finish("t1", ME, "failed", T0 + 1, error=bad, wait=False)
    row = journal.fetch("t1")
    assert row is not None and row.error is not None
    assert (row.state, row.error.message, row.error.traceback) == (
        "failed",
        "bad \\udc80 byte",
        "Traceback\n  \\udcff\n",
    )


# -- replay ------------------------------------------------------------------------------------


def write_log(directory: Path, name: str, owner: str, records: list[tuple[int, str, str]]) -> list[int]:
    """Write a dead process's log by hand: (sequence, kind, JSON) records; their end positions."""
    directory.mkdir(exist_ok=True)
    log = _intake.IntakeLog(str(directory), name, owner)
    ends = [log.append(f"{kind}{seq}|{text}".encode()) for seq, kind, text in records]
    log.close()
    return ends


def test_replay_applies_a_dead_process_records_in_the_order_it_accepted_them(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteJournal(path).close()
    owner = dead_owner()
    row = record(1, owner=owner)
    directory = Path(f"{path}-intake")
    # The enqueue in one thread's log, the start mark and the finish in another's.
    write_log(directory, "dead-a", owner, [(1, "e", _apply.enqueue_record(row)), (3, "f", _apply.finish_record(
        "t1", owner, "succeeded", '"ok"', (None, None, None), None, T0 + 2))])  # fmt: skip
    write_log(directory, "dead-b", owner, [(2, "s", _apply.start_record("t1", owner, T0 + 1))])
    monkeypatch.setattr(_replay, "REPLAY_CHUNK", 1)  # one record per statement: the order shows
    reader = SQLiteJournal(path)
    try:
        got = reader.fetch("t1")
        assert got is not None
        assert (got.state, got.attempts, got.started_at, got.result) == ("succeeded", 1, T0 + 1, '"ok"')
    finally:
        reader.close()
    assert segments(path) == []


def test_replay_starts_after_the_applied_position_and_never_applies_twice(path: Path) -> None:
    journal = SQLiteJournal(path)
    owner = dead_owner()
    journal.enqueue([record(1, owner=owner), record(2, owner=owner)])  # already in the file
    journal.close()
    ends = write_log(Path(f"{path}-intake"), "dead-a", owner, [
        (1, "e", _apply.enqueue_record(record(1, owner=owner))),
        (2, "s", _apply.start_record("t1", owner, T0 + 1)),
        (3, "s", _apply.start_record("t2", owner, T0 + 1)),
    ])  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # what the dead writer had committed
        conn.execute("UPDATE tasks SET state = 'running', attempts = 1 WHERE id = 't1'")
        conn.execute("INSERT INTO intake (log, owner, applied) VALUES ('dead-a', ?, ?)", (owner, ends[1]))
    reader = SQLiteJournal(path)
    try:
        assert [(r.id, r.state, r.attempts) for r in reader.list_tasks()] == [("t2", "running", 1),
                                                                              ("t1", "running", 1)]  # fmt: skip
        assert reader.lost_writes == 0  # the enqueue of t1 was not tried again
    finally:
        reader.close()


def test_an_intact_record_offload_did_not_write_is_counted_lost(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    SQLiteJournal(path).close()
    owner = dead_owner()
    directory = Path(f"{path}-intake")
    write_log(directory, "dead-a", owner, [(1, "e", _apply.enqueue_record(record(1, owner=owner)))])
    log = _intake.IntakeLog(str(directory), "dead-b", owner)
    for strange in (b"no separator here", b"z2|[1]", b"e3|not json", b"e4|{}"):
        log.append(strange)
    log.close()
    reader = SQLiteJournal(path)
    try:
        assert reader.fetch("t1") is not None
        assert reader.lost_writes == 4
    finally:
        reader.close()
    assert "a record of intake log dead-b" in caplog.text and "cannot be read" in caplog.text


def test_a_live_process_log_is_never_replayed_by_another(path: Path, journal: SQLiteJournal) -> None:
    with write_locked(path):
        journal.enqueue([record(1)])  # accepted, not applied: in this process's live log
        other = SQLiteJournal(path, busy_timeout=0.01, lock_timeout=0.01, check_on_open=False)
        other.close()
    journal.flush()
    assert in_file(path) == [("t1", "queued")]
    assert journal.lost_writes == 0


# -- a file that cannot be written -------------------------------------------------------------


def test_accepted_writes_wait_for_the_file_and_new_ones_are_refused_meanwhile(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_writer, "RETRY_INTERVAL", 0.01)
    journal = SQLiteJournal(path, busy_timeout=0.01, lock_timeout=0.05)
    try:
        with write_locked(path):
            journal.enqueue([record(1)])  # accepted: in the intake log
            intake = journal._intake
            assert intake is not None
            until(lambda: intake.broken is not None, "the writer found the file locked")
            with pytest.raises(JournalWriteError, match=r"j\.sqlite3: write failed: database is locked"):
                journal.enqueue([record(2)])
            assert in_file(path) == []
        until(lambda: not intake.pending(), "the writer applied the kept record")
        assert in_file(path) == [("t1", "queued")]
        assert journal.lost_writes == 0
    finally:
        journal.close()
    assert "1 accepted write(s) are not in the file yet" in caplog.text


def test_closing_keeps_what_could_not_be_applied_and_the_next_opener_applies_it(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = SQLiteJournal(path, busy_timeout=0.01, lock_timeout=0.05)
    with write_locked(path):
        journal.enqueue([record(1)])
        journal.close()
    assert "1 accepted write(s) could not be applied before closing" in caplog.text
    assert segments(path) != []
    reader = SQLiteJournal(path)  # this process, but no instance appends to that log any more
    try:
        assert reader.fetch("t1") is not None
    finally:
        reader.close()
    assert segments(path) == []
    assert in_file(path, "SELECT count(*) FROM intake") == [(0,)]


def test_a_segment_that_finds_no_room_is_made_smaller(
    journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    real = os.posix_fallocate

    def small_disk(fd: int, offset: int, size: int) -> None:
        if size > 64 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, size)

    monkeypatch.setattr(os, "posix_fallocate", small_disk)
    journal.enqueue([record(1)])
    (segment,) = segments(path)
    assert os.path.getsize(f"{path}-intake/{segment}") <= 64 * 1024
    journal.flush()
    assert in_file(path) == [("t1", "queued")]


def test_an_intake_that_cannot_be_written_refuses_the_enqueue_naming_the_cause(
    journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(JournalWriteError) as info:
        journal.enqueue([record(1)])
    assert f"its intake log in {path}-intake cannot be written (disk full)" in str(info.value)
    journal.flush()
    assert in_file(path) == []  # nothing reported accepted that was not written


# -- segments and threads ----------------------------------------------------------------------


def test_full_segments_are_deleted_once_applied(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_intake, "SEGMENT_BYTES", 4096)
    journal = SQLiteJournal(path)
    try:
        for n in range(300):
            journal.enqueue([record(n)])
        journal.flush()
        until(lambda: len(segments(path)) <= 3, "full segments were deleted")  # the current one, its spare
        assert len(in_file(path)) == 300
    finally:
        journal.close()
    assert segments(path) == []


def test_each_writing_thread_has_a_log_and_a_new_thread_takes_an_exited_one(journal: SQLiteJournal) -> None:
    both = threading.Barrier(2, timeout=WAIT)

    def enqueue(n: int) -> None:
        journal.enqueue([record(n)])
        both.wait()

    first = [threading.Thread(target=enqueue, args=(n,)) for n in (1, 2)]
    for thread in first:
        thread.start()
    for thread in first:
        thread.join(WAIT)
    intake = journal._intake
    assert intake is not None
    assert len(intake._channels) == 2  # alive at once: a log each
    later = threading.Thread(target=journal.enqueue, args=([record(3)],))
    later.start()
    later.join(WAIT)
    assert len(intake._channels) == 2  # it took over a log whose thread had exited
    assert {r.id for r in journal.list_tasks()} == {"t1", "t2", "t3"}


def test_a_thread_far_ahead_of_the_writer_waits_for_a_commit(
    path: Path, journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_writer, "MAX_PENDING", 5)
    done = threading.Event()

    def enqueue_many() -> None:
        for n in range(6):
            journal.enqueue([record(n)])
        done.set()

    with write_locked(path):
        thread = threading.Thread(target=enqueue_many)
        thread.start()
        until(lambda: journal._intake is not None and journal._intake.pending(), "records were accepted")
        assert not done.wait(0.2)  # the sixth waits for the file
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert len(in_file(path)) == 6


# -- rows other processes change -----------------------------------------------------------------


def test_a_cancel_from_another_instance_is_seen_before_the_start(path: Path, journal: SQLiteJournal) -> None:
    me = _owner.owner_id()  # the rows' owner: this process, whose mailbox the cancel writes to
    journal.enqueue([record(1, owner=me)])
    other = SQLiteJournal(path)
    try:
        assert other.cancel("t1", "cancelled from the dashboard", T0)
    finally:
        other.close()
    assert not journal.start("t1", me, T0 + 1)  # its mailbox said: look again
    row = journal.fetch("t1")
    assert row is not None and (row.state, row.attempts) == ("cancelled", 0)


def test_a_start_that_a_cancel_raced_records_the_run(
    path: Path, journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    me = _owner.owner_id()
    journal.enqueue([record(1, owner=me)])
    journal.flush()
    monkeypatch.setattr(_sqlite, "notify", lambda directory, owner: False)  # the start comes first
    other = SQLiteJournal(path)
    try:
        assert other.cancel("t1", "cancelled from the dashboard", T0)
    finally:
        other.close()
    with caplog.at_level(logging.WARNING, logger="offload.runner"):
        assert journal.start("t1", me, T0 + 1)
        journal.flush()
    row = journal.fetch("t1")
    assert row is not None and (row.state, row.attempts, row.owner, row.reason) == ("running", 1, me, None)
    assert "was cancelled from another process (cancelled from the dashboard) as it started here" in caplog.text
    assert journal.finish("t1", me, "succeeded", T0 + 2, wait=False)
    assert journal.fetch("t1").state == "succeeded"  # type: ignore[union-attr]


def test_a_process_without_a_mailbox_is_not_notified(tmp_path: Path) -> None:
    assert not _intake.notify(str(tmp_path), "host:1:2")
    box = _intake.Mailbox(_intake.mailbox_path(str(tmp_path), "host:1:2"))
    before = box.token()
    assert _intake.notify(str(tmp_path), "host:1:2")
    assert box.token() != before
    box.close()
    assert not _intake.notify(str(tmp_path), "host:1:2")


def test_enqueue_records_are_json_the_file_reads_back(journal: SQLiteJournal) -> None:
    row = TaskRecord(id='q"1', name="a\\b", payload='[["\\n"],{}]', owner=None, created_at=1.5, run_at=2.0)
    journal.enqueue([row])
    assert journal.fetch('q"1') == row


def test_repair_keeps_what_the_intake_logs_held_past_the_damaged_file(path: Path) -> None:
    from offload.journal._repair import repair

    store = SQLiteJournal(path)
    store.enqueue([TaskRecord(id=f"c{n}", name="x", payload="[[" + "7," * 300 + "7],{}]") for n in range(200)])
    store.checkpoint()
    store.close()
    owner = dead_owner()  # a process that died with one accepted enqueue the file never got
    write_log(Path(f"{path}-intake"), "dead-a", owner, [(1, "e", _apply.enqueue_record(record(1, owner=owner)))])
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)
    aside, copied, _ = repair(str(path))
    assert Path(f"{aside}-intake").is_dir()  # the logs went aside with the damaged file
    repaired = SQLiteJournal(path)
    try:
        row = repaired.fetch("t1")
        assert row is not None and (row.state, row.owner) == ("queued", None)
        assert repaired.counts()["queued"] == copied + 1
    finally:
        repaired.close()
