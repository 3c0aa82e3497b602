"""Journal failure paths: bad payloads, bad rows, bad files, full disks, read-only places."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

import offload
from offload import JournalCorruptError, JournalError, PayloadError
from offload._codec import decode_payload, encode_payload
from offload.journal import SCHEMA_VERSION, SQLiteJournal, TaskRecord
from offload.journal._schema import migrate

from ..conftest import WAIT


@offload.task(name="failures.echo")
def echo(*args: object, **kwargs: object) -> list[object]:
    return [args, kwargs]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


# -- payloads ------------------------------------------------------------------


def test_documented_types_round_trip_exactly() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    args = ((1, (2, "x")), b"\x00\xff", when, datetime(2026, 1, 2), date(2026, 1, 2), [1.5, None, True])
    kwargs = {"nested": {"t": (1,), "b": b"", "s": "é"}}
    text = encode_payload("t", args, kwargs, 10_000)
    assert decode_payload(text) == (args, kwargs)
    assert type(decode_payload(text)[0][0]) is tuple


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "NaN and infinities"),
        ({1, 2}, "builtins.set"),
        (object(), "builtins.object"),
        ({1: "x"}, "keys must be str"),
        ({"__offload_tuple__": [1]}, "reserved"),
        (bytearray(b"x"), "builtins.bytearray"),
        ("a\udc80b", "lone surrogate"),
        ({"k\udc80": 1}, "lone surrogate"),
    ],
)
def test_values_json_cannot_carry_are_refused_naming_the_argument(value: object, words: str) -> None:
    with pytest.raises(PayloadError, match=r"task 'failures.echo': argument kwargs\['v'\]") as info:
        encode_payload("failures.echo", (), {"v": value}, 10_000)
    assert words in str(info.value)


def test_oversized_payload_names_the_size_and_the_limit(path: Path) -> None:
    journal = SQLiteJournal(path, max_payload=1000)
    with offload.Runner(workers=1, journal=journal) as runner:
        with pytest.raises(PayloadError, match=r"take 2,\d{3} bytes, over the journal's limit of 1,000 bytes"):
            runner.submit(echo, "x" * 2000)
        assert runner.submit(echo, "x" * 100).result(timeout=WAIT) == [("x" * 100,), {}]
    journal.close()  # the runner closes only the journals it opened itself


def test_a_journal_runner_refuses_undeclared_callables(path: Path) -> None:
    with offload.Runner(workers=1, journal=path) as runner, pytest.raises(PayloadError, match="declared tasks"):
        runner.submit(print, "hello")


# -- rows this process cannot run ---------------------------------------------------


def add_row(path: Path, task_id: str, name: str, payload: object) -> None:
    journal = SQLiteJournal(path)
    journal.enqueue([TaskRecord(id=task_id, name=name, payload="[[],{}]", owner=None)])
    journal.close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # what a buggy or hostile writer could leave
        conn.execute("UPDATE tasks SET payload = ? WHERE id = ?", (payload, task_id))


def run_journal(path: Path) -> dict[str, TaskRecord]:
    with offload.Runner(workers=2, journal=path) as runner:
        runner._journal.claim()  # type: ignore[union-attr]
        assert runner.join(timeout=WAIT)
    journal = SQLiteJournal(path)
    try:
        return {row.id: row for row in journal.list_tasks()}
    finally:
        journal.close()


def test_unknown_task_fails_unknown_task_and_runs_once_registered_and_requeued(path: Path) -> None:
    add_row(path, "u1", "failures.not_yet", "[[3],{}]")
    row = run_journal(path)["u1"]
    assert (row.state, row.reason) == ("failed", "unknown_task")
    assert row.error is not None and "offload journal retry u1" in row.error.message

    @offload.task(name="failures.not_yet")
    def not_yet(n: int) -> int:
        return n * 2

    journal = SQLiteJournal(path)
    assert journal.requeue("u1", 0.0)
    journal.close()
    row = run_journal(path)["u1"]
    assert (row.state, row.result) == ("succeeded", "6")


@pytest.mark.parametrize(
    "payload", ["not json", "[[1]]", '[[{"__offload_nope__": 1}],{}]', "[[NaN],{}]", b"\x80\x04K\x01."]
)
def test_undecodable_rows_fail_decode_error(path: Path, payload: object) -> None:
    add_row(path, "d1", "failures.echo", payload)
    row = run_journal(path)["d1"]
    assert (row.state, row.reason) == ("failed", "decode_error")


def test_a_pickle_shaped_row_is_never_unpickled(path: Path, tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Exploit())
    with pytest.raises(FileNotFoundError):
        marker.stat()
    add_row(path, "p1", "failures.echo", payload)
    row = run_journal(path)["p1"]
    assert (row.state, row.reason) == ("failed", "decode_error")
    assert not marker.exists()


# -- the file ---------------------------------------------------------------------------


def test_files_are_private(path: Path) -> None:
    with offload.Runner(workers=1, journal=path) as runner:
        runner.submit(echo, 1).result(timeout=WAIT)
        for suffix in ("", "-wal", "-shm"):
            assert os.stat(f"{path}{suffix}").st_mode & 0o777 == 0o600, suffix


def test_a_newer_schema_is_refused(path: Path) -> None:
    SQLiteJournal(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match=rf"schema version {SCHEMA_VERSION + 1}, newer .* upgrade offload"):
        SQLiteJournal(path)


def test_an_older_schema_is_migrated_forward_keeping_rows(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), target=1)
    conn.execute(
        "INSERT INTO tasks (id, name, queue, priority, state, payload, created_at, run_at) "
        "VALUES ('old', 'failures.echo', 'default', 0, 'queued', '[[],{}]', 1.0, 1.0)"
    )
    conn.close()
    journal = SQLiteJournal(path)
    try:
        assert journal.schema_version() == SCHEMA_VERSION
        assert journal.fetch("old") is not None
        indexes = {row[0] for row in journal._read("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "tasks_finished" in indexes
    finally:
        journal.close()


def test_a_corrupted_file_is_refused_with_how_to_move_it_aside(path: Path) -> None:
    journal = SQLiteJournal(path)
    journal.enqueue([TaskRecord(id=f"c{n}", name="x", payload="[[" + "7," * 300 + "7],{}]") for n in range(200)])
    journal.checkpoint()
    journal.close()
    with open(path, "r+b") as f:
        f.seek(4096 * 2 + 100)
        f.write(os.urandom(3000))
    with pytest.raises(JournalCorruptError) as info:
        offload.Runner(workers=1, journal=path)
    message = str(info.value)
    assert str(path) in message
    assert f"offload journal repair --journal {path}" in message


# -- writes that fail, in child processes (resource limits and file permissions) ----------

CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    import offload
    from offload import JournalError

    @offload.task(name="failures.child")
    def child_task(n):
        return n

    path, limit, user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if user >= 0:  # tests run as root: become a user that file permissions bind
        os.setgid(user)
        os.setuid(user)
    try:
        runner = offload.Runner(workers=1, journal=path)
    except JournalError as exc:
        print("OPEN", type(exc).__name__, exc, flush=True)
        sys.exit(0)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    for n in range(100_000):
        try:
            handle = runner._enqueue(child_task, (n,), {}, countdown=3600)
        except JournalError as exc:
            print("ERROR", type(exc).__name__, exc, flush=True)
            break
        print("OK", handle.id, flush=True)
    runner.shutdown(wait=True, cancel_pending=True)
    print("EXIT", flush=True)
    """
)


def run_child(path: Path, limit: int = 0, user: int | None = None) -> list[list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(limit), str(-1 if user is None else user)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [line.split(" ", 2) for line in out.stdout.splitlines()]


def enqueue_until_refused(path: Path, limit: int = 0) -> tuple[list[str], str]:
    """A child enqueues until the journal refuses: (the ids it was told were accepted, the error)."""
    lines = run_child(path, limit)
    accepted = [line[1] for line in lines if line[0] == "OK"]
    errors = [line for line in lines if line[0] == "ERROR"]
    assert accepted, lines[:3]
    assert errors, "the journal never refused an enqueue"
    kind, message = errors[0][1], errors[0][2]
    assert kind == "JournalWriteError"
    assert str(path) in message
    return accepted, message


def assert_all_in_journal(path: Path, accepted: list[str]) -> None:
    journal = SQLiteJournal(path)
    try:
        assert journal.check() == ["ok"]
        assert [task_id for task_id in accepted if journal.fetch(task_id) is None] == []
    finally:
        journal.close()


def test_disk_full_raises_journal_write_error_and_accepted_tasks_are_on_disk(path: Path) -> None:
    SQLiteJournal(path).close()
    accepted, message = enqueue_until_refused(path, 400 * 1024)  # the child's file size limit (RLIMIT_FSIZE)
    assert "full" in message or "I/O" in message
    assert_all_in_journal(path, accepted)


@pytest.fixture
def small_disk(tmp_path: Path, in_ci: bool) -> Iterator[Path]:
    """A 3 MiB tmpfs: a disk that really fills up (mounting needs root; CI runs as root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True,
                             check=False)  # fmt: skip
    if mounted.returncode != 0:
        if in_ci:
            pytest.fail(f"cannot mount a tmpfs under CI: {mounted.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_refuses_enqueues_and_loses_nothing_accepted(small_disk: Path) -> None:
    path = small_disk / "journal.sqlite3"
    filler = small_disk / "filler"
    filler.write_bytes(bytes(1024 * 1024))  # room to free once the disk is full
    accepted, message = enqueue_until_refused(path)
    assert "full" in message, message
    filler.unlink()  # the operator frees space; the next process to open the journal applies the rest
    assert_all_in_journal(path, accepted)


def nobody_dir() -> tuple[Path, int | None]:
    """A directory another user can use, and that user (when tests run as root, chmod binds nobody)."""
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp()), None
    directory = Path(tempfile.mkdtemp(dir="/tmp"))
    directory.chmod(0o777)
    return directory, 65534


def test_read_only_file_raises_journal_write_error_naming_path_and_cause() -> None:
    directory, user = nobody_dir()
    path = directory / "journal.sqlite3"
    SQLiteJournal(path).close()
    path.chmod(0o444)
    lines = run_child(path, 0, user)
    assert lines[0][0] in ("OPEN", "ERROR"), lines[:3]
    assert lines[0][1] == "JournalWriteError"
    assert str(path) in lines[0][2]
    assert "readonly" in lines[0][2] or "unable to open" in lines[0][2]


def test_read_only_directory_raises_journal_write_error_naming_path_and_cause() -> None:
    directory, user = nobody_dir()
    path = directory / "journal.sqlite3"
    directory.chmod(0o555)
    lines = run_child(path, 0, user)
    assert lines[0][:2] == ["OPEN", "JournalWriteError"], lines[:3]
    assert str(path) in lines[0][2]
    assert "Permission denied" in lines[0][2] or "unable to open" in lines[0][2]


def test_configure_gives_the_default_runner_a_journal(path: Path) -> None:
    offload.configure(journal=str(path), workers=2)
    assert echo.delay(5).result(timeout=WAIT) == [(5,), {}]
    offload.shutdown()
    journal = SQLiteJournal(path)
    try:
        assert journal.counts()["succeeded"] == 1
    finally:
        journal.close()


def test_bad_journal_option_is_a_configuration_error(path: Path) -> None:
    with pytest.raises(offload.ConfigurationError, match="journal must be a file path"):
        offload.Runner(journal=42)
    with pytest.raises(offload.ConfigurationError, match="eager=True"):
        offload.Runner(journal=str(path), eager=True)
    with pytest.raises(offload.ConfigurationError, match="synchronous"):
        SQLiteJournal(path, synchronous="off")
    for bad in (1000, 256, 131072, True, "4096"):
        with pytest.raises(
            offload.ConfigurationError, match=rf"SQLiteJournal: page_size must be a power of two .* got {bad!r}"
        ):
            SQLiteJournal(path, page_size=bad)  # type: ignore[arg-type]
    assert not path.exists()  # refused before the file is created


def test_page_size_applies_to_a_new_file_and_an_existing_one_keeps_its_own(path: Path) -> None:
    journal = SQLiteJournal(path, page_size=8192)
    journal.close()
    reopened = SQLiteJournal(path, page_size=1024)
    try:
        assert reopened._read("PRAGMA page_size") == [(8192,)]
    finally:
        reopened.close()
    fresh = SQLiteJournal(path.with_name("default.sqlite3"))
    try:
        assert fresh._read("PRAGMA page_size") == [(2048,)]
    finally:
        fresh.close()


def test_existing_journal_in_a_read_only_directory_raises_journal_write_error() -> None:
    directory, user = nobody_dir()
    path = directory / "journal.sqlite3"
    SQLiteJournal(path).close()  # closed cleanly: no -wal/-shm left, and none can be created now
    path.chmod(0o666)
    directory.chmod(0o555)
    lines = run_child(path, 0, user)
    assert lines[0][:2] == ["OPEN", "JournalWriteError"], lines[:3]
    assert str(path) in lines[0][2]
    assert "readonly" in lines[0][2] or "unable to open" in lines[0][2]
