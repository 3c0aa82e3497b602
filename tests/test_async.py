"""Async tasks: coroutines run on one event loop thread owned by the runner, with
the same retries, timeouts, records and context as plain tasks."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading

import pytest

import offload
from offload import QueueFullError, Runner, State, TaskContext, TaskTimeoutError
from offload.testing import FakeClock

from .conftest import WAIT

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def runner():
    r = Runner(workers=4, name="offload-async")
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def test_async_task_result_and_one_loop_thread(runner):
    threads: queue.Queue[tuple[str, int]] = queue.Queue()

    @offload.task(name="tests.async.double")
    async def double(x: int) -> int:
        await asyncio.sleep(0)  # sleep-ok: yields to the loop once, so the task really suspends
        threads.put((threading.current_thread().name, id(asyncio.get_running_loop())))
        return 2 * x

    handles = [runner.submit(double, i) for i in range(10)]
    assert [h.result(timeout=WAIT) for h in handles] == [2 * i for i in range(10)]
    seen = {threads.get(timeout=WAIT) for _ in range(10)}
    assert len(seen) == 1  # one loop, one thread
    assert next(iter(seen))[0] == "offload-async-loop"
    assert all(h.state is State.SUCCEEDED for h in handles)


def test_coroutines_of_many_tasks_interleave_on_the_loop(runner):
    # Two coroutines that each wait for the other: only possible on one shared, running loop.
    async def ping_pong(mine: asyncio.Event, theirs: asyncio.Event) -> str:
        theirs.set()
        await asyncio.wait_for(mine.wait(), WAIT)
        return "met"

    loop_events: queue.Queue[asyncio.Event] = queue.Queue()

    async def make_event() -> None:
        loop_events.put(asyncio.Event())

    assert runner.submit(make_event).wait(WAIT)
    assert runner.submit(make_event).wait(WAIT)
    a, b = loop_events.get(timeout=WAIT), loop_events.get(timeout=WAIT)
    first = runner.submit(ping_pong, a, b)
    second = runner.submit(ping_pong, b, a)
    assert first.result(timeout=WAIT) == second.result(timeout=WAIT) == "met"


def test_async_task_retries_with_the_fake_clock():
    clock = FakeClock()
    attempts: queue.Queue[int] = queue.Queue()

    class Watch(offload.Hook):
        scheduled: queue.Queue[float] = queue.Queue()

        def after_retry_scheduled(self, handle: offload.TaskHandle, exc: BaseException, delay: float) -> None:
            self.scheduled.put(delay)

    watch = Watch()

    @offload.task(name="tests.async.flaky", retries=2, backoff=3.0, jitter=False, bind=True)
    async def flaky(context: TaskContext) -> int:
        attempts.put(context.attempt)
        if context.attempt < 3:
            raise ConnectionError("not yet")
        return context.attempt

    with Runner(workers=2, clock=clock, hooks=[watch]) as runner:
        handle = runner.submit(flaky)
        assert watch.scheduled.get(timeout=WAIT) == 3.0
        clock.advance(3.0)
        assert watch.scheduled.get(timeout=WAIT) == 6.0
        clock.advance(6.0)
        assert handle.result(timeout=WAIT) == 3
        assert [attempts.get(timeout=WAIT) for _ in range(3)] == [1, 2, 3]


def test_async_failure_is_recorded(runner):
    @offload.task(name="tests.async.fails")
    async def fails() -> None:
        raise ValueError("async boom")

    handle = runner.submit(fails)
    with pytest.raises(ValueError, match="async boom"):
        handle.result(timeout=WAIT)
    assert handle.error is not None and handle.error.type == "builtins.ValueError"
    assert "async boom" in handle.error.traceback


def test_async_timeout_cancels_the_coroutine_on_the_fake_clock():
    clock = FakeClock()
    started = threading.Event()
    unwound = threading.Event()

    @offload.task(name="tests.async.slow", timeout=30)
    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set
        finally:
            unwound.set()

    with Runner(workers=1, clock=clock) as runner:
        handle = runner.submit(slow)
        assert started.wait(WAIT)
        clock.advance(29.9)
        assert not unwound.is_set()
        clock.advance(0.1)
        with pytest.raises(TaskTimeoutError, match=r"exceeded its timeout of 30s; its coroutine was cancelled"):
            handle.result(timeout=WAIT)
        assert unwound.is_set()  # the coroutine unwound before the attempt was recorded
        assert handle.state is State.FAILED


def test_an_async_task_that_finishes_in_time_leaves_a_stale_timer():
    clock = FakeClock()

    @offload.task(name="tests.async.quick", timeout=30)
    async def quick() -> int:
        return 1

    with Runner(workers=1, clock=clock) as runner:
        before = runner._stale_timers
        assert runner.submit(quick).result(timeout=WAIT) == 1
        # two: the watch on the call that made the coroutine, and the coroutine's own
        assert runner._stale_timers == before + 2
        clock.advance(30)  # the timer fires and finds nothing to do
        assert runner.join(WAIT)


def test_contextvars_travel_into_the_coroutine(runner):
    async def read() -> str:
        return request_id.get()

    token = request_id.set("req-42")
    try:
        handle = runner.submit(read)
    finally:
        request_id.reset(token)
    assert handle.result(timeout=WAIT) == "req-42"


def test_enqueue_from_a_coroutine_does_not_block_the_loop():
    runner = Runner(workers=1, queue_size=1, on_full="block", block_timeout=WAIT)
    gate = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        assert gate.wait(WAIT)

    async def enqueue_when_full() -> None:
        runner.submit(int)  # the queue is full: must raise, not block the loop

    runner.submit(busy)
    assert started.wait(WAIT)
    runner.submit(int)  # fills the queue
    with pytest.raises(QueueFullError, match="never blocks the event loop"):
        asyncio.run(enqueue_when_full())
    gate.set()
    runner.shutdown()


def test_eager_mode_runs_coroutines(runner):
    async def value() -> int:
        return 7

    with offload.testing.eager():
        assert offload.submit(value).result(timeout=WAIT) == 7


def test_loop_thread_stops_at_shutdown():
    runner = Runner(workers=1, name="offload-loopstop")

    async def noop() -> None:
        pass

    assert runner.submit(noop).wait(WAIT)
    loop_thread = runner._flow_state.loop.thread
    assert loop_thread.is_alive()
    runner.shutdown()
    assert not loop_thread.is_alive()


def test_cancel_of_a_running_coroutine_cancels_it(runner):
    started = threading.Event()
    saw_cancel = threading.Event()

    @offload.task(name="tests.async.cancellable", retries=3)
    async def waits_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    handle = runner.submit(waits_forever)
    assert started.wait(WAIT)
    assert handle.cancel() is False  # running: asked, not yet done
    with pytest.raises(offload.TaskCancelledError, match="cancelled while running"):
        handle.result(timeout=WAIT)
    assert saw_cancel.wait(WAIT)
    assert handle.attempts == 1  # no retry after a cancel
    assert handle.state is State.FAILED
    assert not runner._flow_state.coroutines
