"""A runner's bounded history is a MemoryStore: finished handles read through the Store contract."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

import offload
from offload import State
from offload.journal import Filter, MemoryStore

from ..conftest import WAIT


@offload.task(name="history.double")
def double(x: int) -> dict[str, int]:
    return {"x": x * 2}


@offload.task(name="history.boom")
def boom(x: object) -> None:
    raise ValueError(f"boom {x!r}")


@pytest.fixture
def runner() -> Iterator[offload.Runner]:
    runner = offload.Runner(workers=1)
    yield runner
    runner.shutdown()


def test_finished_tasks_read_as_records(runner: offload.Runner) -> None:
    ok = runner.submit(double, 21)
    bad = runner.submit(boom, [1, "two"])
    assert runner.join(timeout=WAIT)
    store = runner.history
    assert isinstance(store, MemoryStore)

    done = store.fetch(ok.id)
    assert done is not None
    assert (done.name, done.state, done.attempts) == ("history.double", "succeeded", 1)
    assert json.loads(done.result or "null") == {"x": 42}
    assert done.payload == ""  # a succeeded task lets go of its arguments
    assert done.finished_at == ok.finished_at and done.owner is None

    failed = store.fetch(bad.id)
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and failed.error.message == "boom [1, 'two']"
    assert json.loads(failed.payload) is not None  # a failed task keeps its (JSON) arguments
    assert failed.payload != ""

    assert [r.id for r in store.list_tasks(Filter(state="failed"))] == [bad.id]
    assert store.count_tasks(Filter(name="history.double")) == 1
    counts = store.counts()
    assert (counts["succeeded"], counts["failed"], counts["queued"]) == (1, 1, 0)
    # get() still returns the live handle, with the result object itself.
    assert runner.get(ok.id) is ok


def test_arguments_that_are_not_json_read_as_empty_payload(runner: offload.Runner) -> None:
    handle = runner.submit(boom, threading.Lock())
    assert handle.wait(timeout=WAIT)
    record = runner.history.fetch(handle.id)
    assert record is not None and record.state == "failed" and record.payload == ""


def test_the_history_bound_drops_the_oldest_finished(runner: offload.Runner) -> None:
    bounded = offload.Runner(workers=1, history=2)
    try:
        handles = [bounded.submit(double, i) for i in range(4)]
        assert bounded.join(timeout=WAIT)
        kept = [r.id for r in bounded.history.list_tasks(Filter(newest_first=False))]
        assert kept == [h.id for h in handles[2:]]
        assert bounded.get(handles[0].id) is None
    finally:
        bounded.shutdown()


def test_history_zero_keeps_nothing() -> None:
    runner = offload.Runner(workers=1, history=0)
    try:
        handle = runner.submit(double, 1)
        assert handle.result(timeout=WAIT) == {"x": 2}
        assert runner.history.count_tasks() == 0
        assert runner.get(handle.id) is None
    finally:
        runner.shutdown()


def test_prune_empties_the_history(runner: offload.Runner) -> None:
    handles = [runner.submit(double, i) for i in range(3)]
    assert runner.join(timeout=WAIT)
    assert runner.history.prune(runner._wall(), keep=1) == 2
    assert [runner.get(h.id) for h in handles] == [None, None, handles[2]]
    assert runner.history.prune(runner._wall(), keep=0) == 1
    assert runner.get(handles[2].id) is None


def test_a_cancelled_task_reads_with_its_reason(runner: offload.Runner) -> None:
    release = threading.Event()
    runner.submit(release.wait, WAIT)
    waiting = runner.submit(double, 1)
    assert waiting.cancel()
    release.set()
    record = runner.history.fetch(waiting.id)
    assert record is not None and record.state == "cancelled" and record.reason == waiting.cancel_reason
    assert waiting.state is State.CANCELLED


def test_a_write_to_a_kept_handle_turns_it_into_a_record(runner: offload.Runner) -> None:
    handle = runner.submit(boom, 1)
    assert handle.wait(timeout=WAIT)
    store = runner.history
    assert store.requeue(handle.id, runner._wall())
    record = store.fetch(handle.id)
    assert record is not None and record.state == "queued"
    assert store.handle(handle.id) is None  # no longer the handle: a row of the contract
    assert store.delete(handle.id) and store.fetch(handle.id) is None
