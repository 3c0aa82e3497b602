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
