"""Timeouts: the interrupt raised into the worker, the grace period, abandoned threads."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Iterator

import pytest

import offload
from offload import Runner, State, TaskTimeoutError
from offload.testing import FakeClock

from .conftest import WAIT


class Events(offload.Hook):
    def __init__(self) -> None:
        self.attempts: queue.Queue[int] = queue.Queue()
        self.retries: queue.Queue[float] = queue.Queue()

    def before_attempt(self, handle: offload.TaskHandle) -> None:
        self.attempts.put(handle.attempts)

    def after_retry_scheduled(self, handle: offload.TaskHandle, exc: BaseException, delay: float) -> None:
        self.retries.put(delay)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def runner(clock: FakeClock, events: Events):
    r = Runner(workers=2, clock=clock, hooks=[events], abandon_timeout=5.0)
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def spin_until(event: threading.Event) -> str:
    """A task stuck in Python code: the interrupt lands at its next bytecode."""
    while not event.is_set():
        event.wait(0.001)
    return "finished"


def test_attempt_over_timeout_is_interrupted(runner, clock, events):
    never = threading.Event()
    cleaned_up = threading.Event()

    def stuck() -> None:
        try:
            spin_until(never)
        finally:
            cleaned_up.set()

    handle = runner.submit(offload.task(name="tests.stuck", timeout=30)(stuck))
    assert events.attempts.get(timeout=WAIT) == 1
    clock.advance(29.9)
    assert not handle.wait(0.05)
    clock.advance(0.1)
    with pytest.raises(TaskTimeoutError, match=r"attempt 1 exceeded its timeout of 30s and was interrupted"):
        handle.result(timeout=WAIT)
    assert cleaned_up.is_set()  # finally blocks run
    assert handle.state is State.FAILED
    assert handle.error is not None and "spin_until" in handle.error.traceback  # where it was stuck
    assert "_workers.py" not in handle.error.traceback  # starts at the task, not offload's frame
    assert runner.stats().abandoned_threads == 0
    assert runner.submit(int, 4).result(timeout=WAIT) == 4  # the worker survived


def test_except_exception_in_the_task_cannot_swallow_the_timeout(runner, clock, events):
    never = threading.Event()

    def swallows() -> str:
        try:
            spin_until(never)
        except Exception:
            return "swallowed"
        return "no"

    handle = runner.submit(offload.task(name="tests.swallows", timeout=1)(swallows))
    events.attempts.get(timeout=WAIT)
    clock.advance(1)
    with pytest.raises(TaskTimeoutError):
        handle.result(timeout=WAIT)


def test_timeout_is_retryable(runner, clock, events):
    release = threading.Event()
    calls = []

    def first_stuck() -> str:
        calls.append(1)
        if len(calls) == 1:
            spin_until(threading.Event())
        return "second try"

    handle = runner.submit(
        offload.task(name="tests.retry_timeout", timeout=10, retries=1, backoff=2.0, jitter=False)(first_stuck)
    )
    events.attempts.get(timeout=WAIT)
    clock.advance(10)
    assert events.retries.get(timeout=WAIT) == 2.0
    clock.advance(2)
    assert handle.result(timeout=WAIT) == "second try"
    assert handle.attempts == 2
    release.set()


def test_finishing_in_time_disarms_the_timer(runner, clock, events):
    handle = runner.submit(offload.task(name="tests.quick", timeout=5)(lambda: "quick"))
    assert handle.result(timeout=WAIT) == "quick"
    clock.advance(100)  # the stale timer fires into nothing
    assert runner.submit(int, 1).result(timeout=WAIT) == 1
    assert handle.state is State.SUCCEEDED


def test_thread_stuck_in_c_is_abandoned_and_replaced(clock, events, caplog):
    runner = Runner(workers=1, clock=clock, hooks=[events], abandon_timeout=5.0)
    in_c = threading.Event()
    unblock = threading.Event()

    def blocked_in_c() -> str:
        in_c.set()
        unblock.wait(WAIT)  # a C-level wait: the interrupt can only land when it returns
        return "late"

    try:
        handle = runner.submit(offload.task(name="tests.c_call", timeout=1)(blocked_in_c))
        assert in_c.wait(WAIT)
        clock.advance(1)  # timeout: interrupt scheduled, but the thread is inside a C call
        assert not handle.wait(0.05)
        clock.advance(5)  # grace period over: abandoned
        with pytest.raises(TaskTimeoutError, match="did not stop; its thread was abandoned"):
            handle.result(timeout=WAIT)
        stats = runner.stats()
        assert stats.abandoned_threads == 1
        # capacity is kept: a replacement thread runs new work while the old one is stuck
        assert runner.submit(int, 9).result(timeout=WAIT) == 9
        assert any("abandoned and replaced" in r.getMessage() for r in caplog.records)
    finally:
        unblock.set()
        with runner._lock:
            assert runner._thread_exit.wait_for(lambda: runner._abandoned_alive == 0, timeout=WAIT)
        runner.shutdown(timeout=WAIT)
    assert handle.state is State.FAILED  # the late return did not overwrite the outcome
    assert any("its outcome is discarded" in r.getMessage() for r in caplog.records)


def test_abandoned_threads_beyond_the_cap_reduce_capacity(clock, events, caplog):
    runner = Runner(workers=1, clock=clock, hooks=[events], abandon_timeout=1.0, max_abandoned=0)
    unblock = threading.Event()
    in_c = threading.Event()

    def blocked_in_c() -> None:
        in_c.set()
        unblock.wait(WAIT)

    try:
        handle = runner.submit(offload.task(name="tests.c_call2", timeout=1)(blocked_in_c))
        assert in_c.wait(WAIT)
        clock.advance(1)
        assert not handle.wait(0.05)
        clock.advance(1)
        assert handle.wait(WAIT)
        waiting = runner.submit(int, 1)
        assert not waiting.wait(0.05)  # no capacity left: it waits
        assert any("capacity is reduced" in r.getMessage() for r in caplog.records)
        unblock.set()  # the stuck thread returns and exits; capacity comes back
        assert waiting.result(timeout=WAIT) == 1
    finally:
        unblock.set()
        runner.shutdown(timeout=WAIT)


def test_real_clock_timeout_end_to_end():
    """One test on the real clock, to prove the pieces fit outside the fake one."""
    with Runner(workers=1, abandon_timeout=WAIT) as runner:
        handle = runner.submit(offload.task(name="tests.real_timeout", timeout=0.05)(spin_until), threading.Event())
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            handle.result(timeout=WAIT)
        assert time.monotonic() - started < WAIT


def test_finished_timeouts_do_not_pile_up_in_the_timer_heap(clock):
    with Runner(workers=2, clock=clock) as runner:
        quick = offload.task(name="tests.quick_long_timeout", timeout=3600)(int)
        for i in range(3000):
            runner.submit(quick, i)
        assert runner.join(timeout=WAIT)
        runner.submit(quick, 0).result(timeout=WAIT)
        with runner._lock:
            assert len(runner._timers) <= 2 * 1024 + 2  # compacted, not 3001 stale entries


@contextlib.contextmanager
def logged(text: str) -> Iterator[threading.Event]:
    """An event set when offload logs a record containing ``text``."""
    seen = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    handler = Watch()
    logger = logging.getLogger("offload")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def test_retry_after_an_abandoned_attempt_runs_and_the_late_return_is_recognised(clock, events, caplog):
    """The abandoned thread is still inside attempt 1 (and its context) when attempt 2 starts."""
    runner = Runner(workers=1, clock=clock, hooks=[events], abandon_timeout=1.0)
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    first_in_c = threading.Event()
    unblock = threading.Event()
    calls: list[str] = []

    def sometimes_stuck() -> str:
        calls.append(request_id.get())
        if len(calls) == 1:
            first_in_c.set()
            unblock.wait(WAIT)  # stuck in C: abandoned, then returns late
            return "late"
        return f"attempt {len(calls)} for {request_id.get()}"

    stuck = offload.task(name="tests.stuck_then_fine", timeout=1, retries=1, backoff=0.0, jitter=False)
    try:
        request_id.set("req-7")
        handle = runner.submit(stuck(sometimes_stuck))
        assert first_in_c.wait(WAIT)
        with logged("interrupting it") as interrupted:
            clock.advance(1)  # timeout: the interrupt waits for the C call
            assert interrupted.wait(WAIT)
        with runner._lock:
            pass  # the scheduler logs, then arms the abandon timer, all under this lock
        clock.advance(1)  # grace period over: abandoned; the retry runs on the replacement thread
        assert handle.result(timeout=WAIT) == "attempt 2 for req-7"  # the context was usable again
        assert handle.attempts == 2
        unblock.set()  # the abandoned attempt 1 returns now, while its handle has moved on
        with runner._lock:
            assert runner._thread_exit.wait_for(lambda: runner._abandoned_alive == 0, timeout=WAIT)
        stats = runner.stats()
        assert (stats.running, stats.succeeded, stats.failed) == (0, 1, 0)
        assert stats.threads <= 1  # the late thread exited instead of serving as an extra worker
        assert handle.result(timeout=0) == "attempt 2 for req-7"  # the late "late" was discarded
        assert any("abandoned attempt 1 of task" in r.getMessage() for r in caplog.records)
        assert runner.submit(int, 3).result(timeout=WAIT) == 3
    finally:
        unblock.set()
        runner.shutdown(timeout=WAIT)
