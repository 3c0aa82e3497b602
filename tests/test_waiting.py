"""offload.wait and offload.as_completed, mirroring concurrent.futures."""

from __future__ import annotations

import threading

import pytest

import offload
from offload import Runner

from .conftest import WAIT


@pytest.fixture
def runner():
    r = Runner(workers=4)
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def gate_task(runner: Runner, gate: threading.Event, value: object, fail: bool = False) -> offload.TaskHandle:
    def fn() -> object:
        assert gate.wait(WAIT)
        if fail:
            raise ValueError(value)
        return value

    return runner.submit(fn)


def test_wait_all_completed(runner):
    gates = [threading.Event() for _ in range(3)]
    handles = [gate_task(runner, g, i) for i, g in enumerate(gates)]
    done, not_done = offload.wait(handles, timeout=0.01)
    assert done == set() and not_done == set(handles)
    for g in gates:
        g.set()
    done, not_done = offload.wait(handles, timeout=WAIT)
    assert done == set(handles) and not_done == set()


def test_wait_first_completed(runner):
    slow, fast = threading.Event(), threading.Event()
    a = gate_task(runner, slow, "a")
    b = gate_task(runner, fast, "b")
    fast.set()
    done, not_done = offload.wait([a, b], timeout=WAIT, return_when=offload.FIRST_COMPLETED)
    assert done == {b} and not_done == {a}
    slow.set()


def test_wait_first_exception(runner):
    ok_gate, bad_gate, slow = threading.Event(), threading.Event(), threading.Event()
    ok = gate_task(runner, ok_gate, "ok")
    bad = gate_task(runner, bad_gate, "bad", fail=True)
    pending = gate_task(runner, slow, "slow")
    ok_gate.set()
    assert ok.wait(WAIT)
    bad_gate.set()
    done, not_done = offload.wait([ok, bad, pending], timeout=WAIT, return_when=offload.FIRST_EXCEPTION)
    assert bad in done and ok in done and not_done == {pending}
    slow.set()


def test_wait_counts_cancelled_tasks_as_done():
    runner = Runner(workers=1)
    gate = threading.Event()
    blocker = gate_task(runner, gate, "x")
    queued = runner.submit(lambda: None)
    assert queued.cancel()
    done, not_done = offload.wait([blocker, queued], timeout=0.01)
    assert done == {queued} and not_done == {blocker}
    gate.set()
    runner.shutdown()


def test_wait_removes_its_callbacks(runner):
    gate = threading.Event()
    handle = gate_task(runner, gate, 1)
    for _ in range(5):
        offload.wait([handle], timeout=0)
    assert not handle._callbacks
    gate.set()
    assert handle.result(timeout=WAIT) == 1


def test_as_completed_yields_in_finishing_order(runner):
    gates = [threading.Event() for _ in range(3)]
    handles = [gate_task(runner, g, i) for i, g in enumerate(gates)]
    order = []
    iterator = offload.as_completed(handles, timeout=WAIT)
    for index in (2, 0, 1):
        gates[index].set()
        finished = next(iterator)
        order.append(finished.result())
    assert order == [2, 0, 1]
    with pytest.raises(StopIteration):
        next(iterator)


def test_as_completed_times_out(runner):
    gate = threading.Event()
    done_gate = threading.Event()
    done_gate.set()
    finished = gate_task(runner, done_gate, "done")
    assert finished.wait(WAIT)
    pending = gate_task(runner, gate, "pending")
    iterator = offload.as_completed([finished, pending], timeout=0.05)
    assert next(iterator) is finished
    with pytest.raises(TimeoutError, match=r"1 \(of 2\) tasks unfinished"):
        next(iterator)
    assert not pending._callbacks
    gate.set()


@pytest.mark.parametrize("fn", [offload.wait, offload.as_completed])
def test_bad_arguments(runner, fn):
    handle = runner.submit(lambda: None)
    with pytest.raises(TypeError, match="iterable of TaskHandle"):
        list(fn(handle))  # a single handle, not a list
    with pytest.raises(TypeError, match="takes TaskHandle objects"):
        list(fn([handle, "nope"]))
    with pytest.raises(ValueError, match="timeout"):
        list(fn([handle], timeout=-1))


def test_bad_return_when(runner):
    with pytest.raises(ValueError, match="return_when must be one of"):
        offload.wait([], return_when="SOME")
