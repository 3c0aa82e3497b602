"""Journal mode inside one process: what each step of a task writes, and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import offload
from offload import ConfigurationError, Retry, State
from offload.journal import MemoryStore, SQLiteJournal
from offload.journal._intake import notify

from ..conftest import WAIT

gate = threading.Event()


@offload.task(name="runtime.add")
def add(a: int, b: int) -> int:
    return a + b


@offload.task(name="runtime.boom")
def boom() -> None:
    raise ValueError("boom")


@offload.task(name="runtime.flaky", retries=1, backoff=0.0, jitter=False)
def flaky() -> str:
    if not gate.is_set():
        gate.set()
        raise Retry(delay=0.0)
    return "ok"


@offload.task(name="runtime.blocked")
def blocked(event_name: str) -> None:
    pass


@offload.task(name="runtime.bound", bind=True, retries=1, backoff=0.0, jitter=False)
def bound(context: offload.TaskContext, x: int) -> list[object]:
    if context.attempt == 1:
        raise ConnectionError("first attempt fails")
    return [context.id, context.attempt, x]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteJournal]:
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    yield journal
    journal.close()


def test_success_and_failure_are_recorded(store: SQLiteJournal) -> None:
    with offload.Runner(workers=2, journal=store) as runner:
        ok = runner.submit(add, 2, 3)
        bad = runner.submit(boom)
        assert ok.result(timeout=WAIT) == 5
        assert isinstance(bad.exception(timeout=WAIT), ValueError)
    row = store.fetch(ok.id)
    assert row is not None
    assert (row.state, row.result, row.attempts, row.owner, row.name) == ("succeeded", "5", 1, None, "runtime.add")
    row = store.fetch(bad.id)
    assert row is not None
    assert row.state == "failed"
    assert row.error is not None
    assert (row.error.type, row.error.message) == ("builtins.ValueError", "boom")
    assert "raise ValueError" in row.error.traceback
    store.close()


def test_a_retry_counts_attempts_in_the_journal(store: SQLiteJournal) -> None:
    gate.clear()
    with offload.Runner(workers=1, journal=store) as runner:
        assert runner.submit(flaky).result(timeout=WAIT) == "ok"
        handle_id = runner.submit(add, 1, 1).id
    rows = {row.name: row for row in store.list_tasks()}
    assert (rows["runtime.flaky"].state, rows["runtime.flaky"].attempts) == ("succeeded", 2)
    assert store.fetch(handle_id).state == "succeeded"  # type: ignore[union-attr]
    store.close()


def test_cancel_is_recorded(store: SQLiteJournal, fake_clock: offload.testing.FakeClock) -> None:
    with offload.Runner(workers=1, journal=store, clock=fake_clock) as runner:
        later = runner._enqueue(add, (1, 2), {}, countdown=60.0)
        assert store.fetch(later.id).state == "scheduled"  # type: ignore[union-attr]
        assert later.cancel()
    row = store.fetch(later.id)
    assert row is not None
    assert (row.state, row.reason) == ("cancelled", "cancelled")
    store.close()


def test_shutdown_leaves_waiting_work_in_the_journal_for_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite3"
    with (
        caplog.at_level(logging.INFO, logger="offload.runner"),
        offload.Runner(workers=1, journal=path, drain_timeout=0.0) as runner,
    ):
        later = runner._enqueue(add, (20, 22), {}, countdown=0.5)
    # Said as what it is: not a loss (no WARNING), the row stays for the next start.
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "shutdown:" in r.getMessage()]
    assert ("INFO", f"shutdown: left 1 task(s) not due before the drain deadline; their rows stay in "
            f"journal {path} for the next start") in said  # fmt: skip
    assert not [m for level, m in said if level == "WARNING"]
    store = SQLiteJournal(path)
    row = store.fetch(later.id)
    assert row is not None
    assert (row.state, row.owner) == ("scheduled", None)  # released: any process may take it
    store.close()
    with offload.Runner(workers=1, journal=path) as again:
        pause = threading.Event()
        for _ in range(int(WAIT / 0.05)):  # claimed within a second, run when due
            handle = again.get(later.id)
            if handle is not None and handle.state is State.SUCCEEDED:
                break
            pause.wait(0.05)
        assert handle is not None
        assert handle.state is State.SUCCEEDED, "the next runner never ran the task"
        assert handle.result(timeout=WAIT) == 42


def test_any_store_works_including_the_memory_one() -> None:
    store = MemoryStore()
    with offload.Runner(workers=1, journal=store) as runner:
        assert runner.submit(add, 1, 2).result(timeout=WAIT) == 3
    (row,) = store.list_tasks()
    assert row.state == "succeeded"
    assert row.result == "3"


def test_at_most_once_is_validated_and_recorded(store: SQLiteJournal) -> None:
    with pytest.raises(ConfigurationError, match="at_most_once must be True or False"):
        offload.task(at_most_once="yes")(lambda: None)  # type: ignore[call-overload]

    @offload.task(name="runtime.once", at_most_once=True)
    def once() -> int:
        return 1

    with offload.Runner(workers=1, journal=store) as runner:
        handle = runner.submit(once)
        handle.result(timeout=WAIT)
    row = store.fetch(handle.id)
    assert row is not None
    assert row.at_most_once
    assert handle.state is State.SUCCEEDED
    store.close()


release = threading.Event()
started = threading.Event()


@offload.task(name="runtime.wait")
def wait_for_release() -> str:
    started.set()
    assert release.wait(WAIT)
    return "done"


def test_journal_write_errors_in_workers_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteJournal(tmp_path / "j.sqlite3")
    release.clear()
    started.clear()
    with offload.Runner(workers=1, journal=store) as runner:
        handle = runner.submit(wait_for_release)
        assert started.wait(WAIT)
        store.close()  # the journal goes away under a running task: its finish cannot be written
        release.set()
        assert handle.result(timeout=WAIT) == "done"  # the task's outcome is not lost in memory
        with pytest.raises(offload.JournalError, match="closed"):
            runner.submit(add, 1, 2)  # and an enqueue that cannot be written is refused, not accepted
    assert store.lost_writes >= 1  # the finish, written without waiting, is counted and logged
    assert "journal write lost" in caplog.text


def test_a_bound_task_is_journaled_and_gets_its_context(store: SQLiteJournal) -> None:
    with offload.Runner(workers=1, journal=store) as runner:
        handle = runner.submit(bound, 7)
        assert handle.result(timeout=WAIT) == [handle.id, 2, 7]
    record = store.fetch(handle.id)
    assert record is not None and record.state == "succeeded" and record.attempts == 2


def test_a_bound_task_claimed_from_the_journal_gets_its_context(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite3")
    with offload.Runner(workers=0, journal=path) as web:  # enqueue only
        task_id = web.submit(bound, 5).id
    finished = threading.Event()

    @offload.on("after_success")
    def seen(handle: offload.TaskHandle, result: object) -> None:
        if handle.id == task_id:
            finished.set()

    with offload.Runner(workers=1, journal=path) as worker:  # its keeper claims the unowned row
        assert finished.wait(WAIT)
        handle = worker.get(task_id)
        assert handle is not None and handle.result(timeout=WAIT) == [task_id, 2, 5]


def test_get_finds_any_process_task_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with offload.Runner(workers=1, journal=path) as first:
        ok = first.submit(add, 20, 22)
        bad = first.submit(boom)
        ok.result(timeout=WAIT)
        bad.exception(timeout=WAIT)
    with offload.Runner(workers=0, journal=path) as other:  # another process would see the same rows
        waiting = other.submit(add, 1, 1)
        found = other.get(ok.id)
        assert found is not None
        assert found is not ok
        assert (found.state, found.attempts, found.result(timeout=0)) == (State.SUCCEEDED, 1, 42)
        failed = other.get(bad.id)
        assert failed is not None
        assert failed.state is State.FAILED
        with pytest.raises(offload.OffloadError, match=r"failed: builtins.ValueError: boom"):
            failed.result(timeout=0)
        queued = other.get(waiting.id)  # enqueue only: this process keeps no handle, the row says queued
        assert queued is not None
        assert (queued.id, queued.state) == (waiting.id, State.QUEUED)
        assert other.get("no-such-id") is None


FORK_SCRIPT = """
import os, sys
import offload
from offload.journal import SQLiteJournal

@offload.task(name="fork.add")
def add(a, b):
    return a + b

path = sys.argv[1]
runner = offload.Runner(workers=2, journal=path)
assert runner.submit(add, 1, 1).result(timeout=10) == 2
parent_owner = runner._journal.owner
pid = os.fork()
if pid == 0:  # a pre-forking server's worker
    ok = runner.submit(add, 2, 2).result(timeout=10) == 4
    code = 0 if ok and runner._journal.owner not in (parent_owner, None) else 1
    runner.shutdown()
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert runner.submit(add, 3, 3).result(timeout=10) == 6
runner.shutdown()
journal = SQLiteJournal(path)
print(journal.counts()["succeeded"], len({r.owner for r in journal.list_tasks()}), journal.owners())
"""


@pytest.mark.subprocess
def test_a_forked_child_gets_its_own_owner_and_connections(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(tmp_path / "j.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    succeeded, _, owners = out.stdout.split(" ", 2)
    assert succeeded == "3"
    assert owners.strip() == "[]"  # both processes released everything at shutdown


def test_retention_keeps_the_newest_finished_rows(tmp_path: Path) -> None:
    store = SQLiteJournal(tmp_path / "j.sqlite3", keep_finished=5, keep_for=None)
    with offload.Runner(workers=2, journal=store) as runner:
        handles = [runner.submit(add, n, 0) for n in range(20)]
        for handle in handles:
            handle.result(timeout=WAIT)
        store.flush()
        assert runner._journal is not None
        runner._journal.prune()  # what the keeper does every minute
        assert store.counts()["succeeded"] == 5
        later = runner._enqueue(add, (1, 1), {}, countdown=3600.0)
        runner._journal.prune()
        assert store.fetch(later.id) is not None  # unfinished rows are never pruned
        later.cancel()
    store.close()


def test_a_refused_enqueue_leaves_no_row(store: SQLiteJournal) -> None:
    release.clear()
    started.clear()
    with offload.Runner(workers=1, queue_size=1, journal=store) as runner:
        running = runner.submit(wait_for_release)
        assert started.wait(WAIT)
        waiting = runner.submit(add, 1, 1)
        with pytest.raises(offload.QueueFullError):
            runner.submit(add, 2, 2)
        assert {row.id for row in store.list_tasks()} == {running.id, waiting.id}
        release.set()
        assert waiting.result(timeout=WAIT) == 2
    store.close()


@offload.task(name="runtime.counted", retries=3, backoff=0.0, jitter=False)
def counted(calls: list[int]) -> None:
    calls.append(1)


_held = {"started": threading.Event(), "release": threading.Event()}


@offload.task(name="runtime.hold")
def hold() -> None:
    _held["started"].set()
    assert _held["release"].wait(WAIT)


def _hold_the_only_worker(runner: offload.Runner) -> threading.Event:
    """Keep the runner's one worker busy, so the next task waits in memory (its row queued, ours)."""
    _held.update(started=threading.Event(), release=threading.Event())
    runner.submit(hold)
    assert _held["started"].wait(WAIT)
    return _held["release"]


@pytest.mark.parametrize("elsewhere", ["cancelled", "taken over"])
def test_a_row_cancelled_or_taken_over_elsewhere_is_not_run_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, elsewhere: str
) -> None:
    path = tmp_path / "j.sqlite3"
    calls: list[int] = []
    other = SQLiteJournal(path)
    seen: list[tuple[str, str]] = []

    class Pairs(offload.Hook):
        def before_attempt(self, handle: offload.TaskHandle) -> None:
            seen.append(("before", handle.name))

        def after_attempt(self, handle: offload.TaskHandle, exc: BaseException | None) -> None:
            seen.append(("after", handle.name))

    with offload.Runner(workers=1, journal=path, hooks=[Pairs()]) as runner:
        release = _hold_the_only_worker(runner)
        try:
            handle = runner.submit(counted, calls)
            row = other.fetch(handle.id)
            owner = runner._journal.owner  # type: ignore[union-attr]
            assert row is not None and (row.state, row.owner) == ("queued", owner)
            if elsewhere == "cancelled":  # what the journal dashboard's cancel writes
                assert other.cancel(handle.id, "cancelled from the dashboard", time.time())
                reason = "its journal row was cancelled (cancelled from the dashboard)"
            else:  # another process took it over (a wrong liveness verdict, a lease that ran out)
                other._write([("UPDATE tasks SET owner = 'host:1:2' WHERE id = ?", (handle.id,))])
                assert notify(f"{path}-intake", owner)  # as recover() does
                reason = "its journal row was taken over by process host:1:2, which runs it"
        finally:
            release.set()  # a failed check must not leave the worker held
        assert handle.wait(WAIT)
    assert handle.state is State.CANCELLED and handle.cancel_reason == reason
    assert calls == [] and handle.attempts == 0  # never ran, and no retry was tried
    assert seen.count(("before", "runtime.counted")) == seen.count(("after", "runtime.counted")) == 1
    with pytest.raises(offload.TaskCancelledError):
        handle.result(timeout=0)
    assert f"task runtime.counted (id {handle.id}) not run: {reason}" in caplog.text
    assert "failed" not in caplog.text
    stats = runner.stats()
    assert (stats.cancelled, stats.failed, stats.retries) == (1, 0, 0)
    after = other.fetch(handle.id)
    assert after is not None and after.attempts == 0  # this process wrote nothing over it
    other.close()
