"""Flow control with the durable journal: bound tasks keep their context when the
journal wraps the function, and tasks recovered from the journal get their
context and their limits back."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import offload
from offload import Runner, TaskContext

from .conftest import WAIT


@offload.task(name="tests.flow_journal.bound", bind=True, retries=1)
def bound(context: TaskContext, n: int) -> list[object]:
    return [context.id, context.attempt, n]


running = 0
high_water = 0
count_lock = threading.Lock()


@offload.task(name="tests.flow_journal.limited", concurrency=1)
def limited(n: int) -> int:
    global running, high_water
    with count_lock:
        running += 1
        high_water = max(high_water, running)
    with count_lock:
        running -= 1
    return n


def test_a_bound_task_runs_with_its_context_under_a_journal(tmp_path: Path) -> None:
    with Runner(workers=2, journal=tmp_path / "j.sqlite3") as runner:
        handle = runner.submit(bound, 3)
        assert handle.result(timeout=WAIT) == [handle.id, 1, 3]


def test_recovered_tasks_get_their_context_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Runner(workers=0, journal=path) as web:  # enqueue only: the rows wait in the journal
        bound_ids = [web.submit(bound, n).id for n in range(3)]
        limited_ids = [web.submit(limited, n).id for n in range(5)]
    done: queue.Queue[tuple[str, object]] = queue.Queue()
    with Runner(workers=4, journal=path, hooks=[Finished(done)]):  # recovers and runs them
        results = dict(done.get(timeout=WAIT) for _ in range(8))
    assert [results[task_id] for task_id in bound_ids] == [[task_id, 1, n] for n, task_id in enumerate(bound_ids)]
    assert [results[task_id] for task_id in limited_ids] == list(range(5))
    assert high_water == 1


class Finished(offload.Hook):
    def __init__(self, done: queue.Queue[tuple[str, object]]) -> None:
        self.done = done

    def after_success(self, handle: offload.TaskHandle, result: object) -> None:
        self.done.put((handle.id, result))


@offload.task(name="tests.flow_journal.echo")
def echo(n: int) -> int:
    return n


def test_an_expired_task_is_cancelled_in_the_journal(tmp_path: Path) -> None:
    from offload.journal import SQLiteJournal
    from offload.testing import FakeClock, use_runner

    clock = FakeClock()
    store = SQLiteJournal(tmp_path / "j.sqlite3")
    gate, busy = threading.Event(), threading.Event()

    @offload.task(name="tests.flow_journal.blocker")
    def blocker() -> None:
        busy.set()
        assert gate.wait(WAIT)

    with Runner(workers=1, journal=store, clock=clock) as runner, use_runner(runner):
        runner.submit(blocker)
        assert busy.wait(WAIT)
        handle = echo.apply_async(args=(1,), expires=10)
        clock.advance(10)
        assert handle.wait(WAIT) and handle.state is offload.State.EXPIRED
        gate.set()
    row = store.fetch(handle.id)
    store.close()  # a runner closes only the journals it opened
    assert row is not None and row.state == "cancelled"  # not queued: a restart will not run it


@offload.task(name="tests.flow_journal.unique", unique=True)
def unique_echo(n: int) -> int:
    return n


def test_a_unique_twin_that_lost_the_race_leaves_no_row(tmp_path: Path) -> None:
    from offload._flow import attach
    from offload._handle import TaskHandle
    from offload._ids import new_task_id
    from offload.journal import SQLiteJournal

    store = SQLiteJournal(tmp_path / "j.sqlite3")
    gate, busy = threading.Event(), threading.Event()

    @offload.task(name="tests.flow_journal.blocker2")
    def blocker() -> None:
        busy.set()
        assert gate.wait(WAIT)

    with Runner(workers=1, journal=store) as runner:
        runner.submit(blocker)
        assert busy.wait(WAIT)
        first = runner.submit(unique_echo, 1)
        # A second enqueue of the same key that passed the lock-free look before `first`
        # was indexed (two threads at once): it is admitted, journaled, then refused.
        options = unique_echo.options
        twin = TaskHandle(new_task_id(), unique_echo.name, unique_echo.fn, (1,), {}, options, runner, 0.0, 0)
        attach(runner, twin, options, 0.0, None)
        assert runner._admit(twin, 0.0) is first
        assert store.fetch(twin.id) is None
        assert store.fetch(first.id) is not None
        gate.set()
        assert first.result(timeout=WAIT) == 1
    store.close()
