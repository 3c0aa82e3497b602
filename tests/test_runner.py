"""The runner: admission, the bounded pool, priorities, cancel, history, stats."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

import offload
from offload import QueueFullError, Runner, RunnerClosedError, State
from offload.testing import FakeClock

from .conftest import WAIT


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runner(clock: FakeClock) -> Iterator[type[Runner]]:
    made: list[Runner] = []

    def make(**options: object) -> Runner:
        options.setdefault("clock", clock)
        r = Runner(**options)  # type: ignore[arg-type]
        made.append(r)
        return r

    yield make  # type: ignore[misc]
    for r in made:
        r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


class Gate:
    """Tasks that block until released, reporting when they start."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: queue.Queue[object] = queue.Queue()

    def task(self, tag: object = None) -> object:
        self.started.put(tag)
        assert self.release.wait(WAIT), "gate never released"
        return tag

    def wait_started(self, n: int = 1) -> list[object]:
        return [self.started.get(timeout=WAIT) for _ in range(n)]


def test_submit_runs_and_returns_result(make_runner):
    runner = make_runner(workers=2)
    handle = runner.submit(lambda a, b=0: a + b, 2, b=3)
    assert handle.result(timeout=WAIT) == 5
    assert handle.state is State.SUCCEEDED
    assert handle.attempts == 1
    assert handle.done() and not handle.cancelled() and not handle.running()
    assert len(handle.id) == 32
    assert handle.name.endswith("<lambda>")


def test_task_exception_is_reraised_unchanged_and_recorded(make_runner):
    runner = make_runner(workers=1)
    error = KeyError("missing")

    def boom() -> None:
        raise error

    handle = runner.submit(boom)
    with pytest.raises(KeyError) as caught:
        handle.result(timeout=WAIT)
    assert caught.value is error
    assert handle.exception(timeout=WAIT) is error
    assert handle.state is State.FAILED
    assert handle.error is not None
    assert handle.error.type == "builtins.KeyError"
    assert handle.error.message == "'missing'"
    assert "in boom" in handle.error.traceback
    assert "raise error" in handle.error.traceback
    # The record starts at the task's own frame: offload's worker frame is not in it.
    assert handle.error.traceback.splitlines()[1].endswith("in boom")
    assert "_workers.py" not in handle.error.traceback


def test_offload_errors_are_recorded_under_their_public_name(make_runner):
    runner = make_runner(workers=1)

    def refuse() -> None:
        raise offload.QueueFullError("downstream queue is full")

    handle = runner.submit(refuse)
    assert isinstance(handle.exception(timeout=WAIT), offload.QueueFullError)
    assert handle.error is not None and handle.error.type == "offload.QueueFullError"
    assert "offload.QueueFullError: downstream queue is full" in handle.error.traceback
    assert offload.TaskCancelledError.__module__ == "offload"


def test_failure_is_logged_with_traceback(make_runner, caplog):
    runner = make_runner(workers=1)

    def broken() -> None:
        raise ValueError("nope")

    handle = runner.submit(broken)
    handle.exception(timeout=WAIT)
    records = [r for r in caplog.records if r.name == "offload.task" and r.levelname == "ERROR"]
    assert len(records) == 1
    record = records[0]
    assert handle.id in record.getMessage()
    assert "broken" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is handle.exception()
    assert record.task_id == handle.id  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.outcome == "failed"  # type: ignore[attr-defined]


def test_pool_is_bounded_and_threads_start_lazily(make_runner):
    runner = make_runner(workers=3)
    assert runner.stats().threads == 0
    gate = Gate()
    handles = [runner.submit(gate.task, i) for i in range(10)]
    gate.wait_started(3)
    stats = runner.stats()
    assert stats.threads == 3
    assert stats.running == 3
    assert stats.queued == 7
    assert stats.busy == 3
    assert gate.started.empty()  # nobody beyond the bound started
    gate.release.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(10))
    assert runner.stats().threads <= 3


def test_idle_threads_retire(make_runner):
    runner = make_runner(workers=2, idle_timeout=0.05)
    runner.submit(lambda: None).result(timeout=WAIT)
    with runner._lock:
        assert runner._thread_exit.wait_for(lambda: runner._n_threads == 0, timeout=WAIT)
    assert runner.stats().threads == 0
    # and new work starts a thread again
    assert runner.submit(lambda: 7).result(timeout=WAIT) == 7


def test_priority_higher_first_fifo_among_equals(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    blocker = runner.submit(gate.task, "blocker")
    gate.wait_started()
    order: list[str] = []
    task = offload.task(name="tests.record")(order.append)
    runner._enqueue(task, ("low",), {}, priority=-5)
    runner._enqueue(task, ("a",), {}, priority=0)
    runner._enqueue(task, ("high",), {}, priority=10)
    runner._enqueue(task, ("b",), {}, priority=0)
    runner._enqueue(task, ("c",), {}, priority=0)
    gate.release.set()
    blocker.result(timeout=WAIT)
    assert runner.join(timeout=WAIT)
    assert order == ["high", "a", "b", "c", "low"]


def test_queue_full_raises_by_default(make_runner):
    runner = make_runner(workers=1, queue_size=2)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    runner.submit(gate.task)
    runner.submit(gate.task)
    with pytest.raises(QueueFullError, match=r"queue is full \(2 tasks waiting, queue_size=2\)"):
        runner.submit(gate.task)
    assert runner.stats().submitted == 3
    gate.release.set()
    assert runner.join(timeout=WAIT)


def test_queue_full_block_waits_for_room(make_runner):
    runner = make_runner(workers=1, queue_size=1, on_full="block", block_timeout=WAIT)
    gate = Gate()
    runner.submit(gate.task, 1)
    gate.wait_started()
    runner.submit(gate.task, 2)
    submitted: queue.Queue[offload.TaskHandle] = queue.Queue()
    blocked = threading.Thread(target=lambda: submitted.put(runner.submit(gate.task, 3)))
    blocked.start()
    with runner._lock:  # the submitter is parked, waiting for room
        assert runner._space.wait_for(lambda: runner._blocked == 1, timeout=WAIT)
    assert submitted.empty()
    gate.release.set()
    third = submitted.get(timeout=WAIT)
    blocked.join(WAIT)
    assert third.result(timeout=WAIT) == 3


def test_queue_full_block_times_out(make_runner):
    runner = make_runner(workers=1, queue_size=1, on_full="block", block_timeout=0.01)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    runner.submit(gate.task)
    with pytest.raises(QueueFullError, match=r"still full after block_timeout=0\.01s"):
        runner.submit(gate.task)
    gate.release.set()


def test_block_from_inside_a_worker_raises_instead_of_deadlocking(make_runner):
    runner = make_runner(workers=1, queue_size=1, on_full="block")
    gate = Gate()

    def parent() -> None:
        runner.submit(gate.task)  # fills the queue
        runner.submit(gate.task)  # would wait for its own worker forever

    handle = runner.submit(parent)
    with pytest.raises(QueueFullError, match="deadlock"):
        handle.result(timeout=WAIT)
    gate.release.set()


def test_cancel_before_start(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    running = runner.submit(gate.task)
    gate.wait_started()
    waiting = runner.submit(gate.task)
    assert waiting.cancel() is True
    assert waiting.cancel() is True  # idempotent
    assert waiting.state is State.CANCELLED
    assert running.cancel() is False  # already started
    with pytest.raises(offload.TaskCancelledError, match="was cancelled"):
        waiting.result(timeout=WAIT)
    gate.release.set()
    running.result(timeout=WAIT)
    assert runner.join(timeout=WAIT)
    stats = runner.stats()
    assert stats.cancelled == 1 and stats.succeeded == 1 and stats.queued == 0
    assert running.cancel() is False  # finished


def test_cancel_scheduled(make_runner, clock):
    runner = make_runner(workers=1)
    ran = threading.Event()
    handle = runner._enqueue(ran.set, (), {}, countdown=10)
    assert handle.state is State.SCHEDULED
    assert handle.cancel()
    clock.advance(20)
    assert runner.join(timeout=WAIT)
    assert not ran.is_set()
    assert runner.stats().scheduled == 0


def test_countdown_runs_only_when_due(make_runner, clock):
    runner = make_runner(workers=1)
    ran = threading.Event()
    handle = runner._enqueue(ran.set, (), {}, countdown=30)
    assert handle.state is State.SCHEDULED
    assert handle.next_attempt_at == pytest.approx(handle.created_at + 30)
    clock.advance(29.9)
    assert not runner.join(timeout=0.05)  # still scheduled: real time passing changes nothing
    assert not ran.is_set()
    clock.advance(0.1)
    assert handle.wait(WAIT)
    assert ran.is_set()


def test_eta_aware_datetime(make_runner, clock):
    from datetime import datetime, timedelta, timezone

    runner = make_runner(workers=1)
    now = datetime.fromtimestamp(clock.time(), timezone.utc)
    later = runner._enqueue(lambda: "later", (), {}, eta=now + timedelta(seconds=5))
    past = runner._enqueue(lambda: "past", (), {}, eta=now - timedelta(hours=1))
    assert past.result(timeout=WAIT) == "past"  # an eta in the past runs now
    assert later.state is State.SCHEDULED
    clock.advance(5)
    assert later.result(timeout=WAIT) == "later"


def test_history_is_bounded_and_get_finds_recent(make_runner):
    runner = make_runner(workers=1, history=3)
    handles = [runner.submit(int, i) for i in range(5)]
    assert runner.join(timeout=WAIT)
    assert [runner.get(h.id) for h in handles[:2]] == [None, None]
    assert [runner.get(h.id) for h in handles[2:]] == handles[2:]
    assert runner.get("nope") is None


def test_get_finds_queued_tasks(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    waiting = runner.submit(gate.task)
    assert runner.get(waiting.id) is waiting
    gate.release.set()


def test_finished_handle_drops_function_and_arguments(make_runner):
    runner = make_runner(workers=1)
    payload = bytearray(1024)
    handle = runner.submit(len, payload)
    assert handle.result(timeout=WAIT) == 1024
    assert handle._fn is None and handle._args is None and handle._kwargs is None and handle._ctx is None


def test_failure_keeps_traceback_lines_but_clears_frame_locals(make_runner):
    runner = make_runner(workers=1)

    def holds_big_local() -> None:
        big = bytearray(10_000_000)  # noqa: F841 - the point is that it is a local
        raise RuntimeError("x")

    handle = runner.submit(holds_big_local)
    exc = handle.exception(timeout=WAIT)
    assert exc is not None
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    task_frame = frames[-1]
    assert task_frame.f_code.co_name == "holds_big_local"
    assert "big" not in task_frame.f_locals


def test_stats_snapshot(make_runner):
    runner = make_runner(workers=2)
    for i in range(5):
        runner.submit(int, i)
    runner.submit(int, "x")  # ValueError
    assert runner.join(timeout=WAIT)
    stats = runner.stats()
    assert stats.submitted == 6
    assert stats.succeeded == 5
    assert stats.failed == 1
    assert stats.failed_attempts == 1
    assert stats.queue_depth == 0
    assert stats.counts[State.SUCCEEDED] == 5
    assert stats.run_time_p50 is not None and stats.run_time_p99 is not None and stats.run_time_mean is not None
    assert stats.run_time_p50 <= stats.run_time_p99
    with pytest.raises(AttributeError):
        stats.succeeded = 0  # type: ignore[misc]


def test_contextvars_travel_with_the_task(make_runner):
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    runner = make_runner(workers=1)
    token = request_id.set("req-42")
    try:
        handle = runner.submit(request_id.get)
    finally:
        request_id.reset(token)
    request_id.set("req-43")
    assert handle.result(timeout=WAIT) == "req-42"


def test_join_returns_false_on_timeout(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    assert runner.join(timeout=0.01) is False
    gate.release.set()
    assert runner.join(timeout=WAIT) is True


def test_result_timeout_raises_timeouterror(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    handle = runner.submit(gate.task)
    with pytest.raises(TimeoutError, match=r"not done after 0\.01s"):
        handle.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        handle.exception(timeout=0.01)
    gate.release.set()


def test_done_callbacks(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    handle = runner.submit(gate.task, "v")
    seen: queue.Queue[str] = queue.Queue()
    handle.add_done_callback(lambda h: seen.put(f"first:{h.result()}"))

    def broken(h: offload.TaskHandle) -> None:
        raise RuntimeError("callback bug")

    handle.add_done_callback(broken)
    handle.add_done_callback(lambda h: seen.put(f"second:{h.state}"))
    gate.release.set()
    assert seen.get(timeout=WAIT) == "first:v"
    assert seen.get(timeout=WAIT) == "second:succeeded"
    handle.add_done_callback(lambda h: seen.put("late"))  # already done: called at once
    assert seen.get_nowait() == "late"


def test_submitting_after_shutdown_raises(make_runner):
    runner = make_runner(workers=1)
    runner.submit(int).result(timeout=WAIT)
    runner.shutdown()
    with pytest.raises(RunnerClosedError, match="accepts no new tasks"):
        runner.submit(int)
    runner.shutdown()  # idempotent


def test_shutdown_drains_queued_work(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    first = runner.submit(gate.task, 1)
    gate.wait_started()
    rest = [runner.submit(int, i) for i in range(3)]
    stopper = threading.Thread(target=runner.shutdown)
    stopper.start()
    gate.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert first.result(timeout=0) == 1
    assert [h.result(timeout=0) for h in rest] == [0, 1, 2]
    assert runner.stats().threads == 0


def test_shutdown_drops_what_misses_the_drain_deadline(make_runner, clock, caplog):
    runner = make_runner(workers=1, drain_timeout=5)
    gate = Gate()
    first = runner.submit(gate.task)
    gate.wait_started()
    queued = runner.submit(int, 1)
    late = runner._enqueue(int, (2,), {}, countdown=60)
    stopper = threading.Thread(target=runner.shutdown)
    stopper.start()
    # The scheduled task is due after the deadline: dropped at once.
    assert late.wait(WAIT) and late.cancelled()
    assert late.cancel_reason == "dropped at shutdown"
    clock.advance(5)  # the drain deadline passes while the first task still runs
    assert queued.wait(WAIT) and queued.cancelled()
    gate.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert first.result(timeout=WAIT) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "dropped" in r.getMessage()]
    assert "shutdown: dropped 1 task(s) not due before the drain deadline" in warnings
    assert f"shutdown: dropped tasks 1-1 of 1: builtins.int (id {late.id})" in warnings
    assert "shutdown: dropped 1 task(s) still queued when the drain timeout passed" in warnings
    assert f"shutdown: dropped tasks 1-1 of 1: builtins.int (id {queued.id})" in warnings


def test_many_dropped_tasks_are_all_named_in_bounded_lines(make_runner, caplog):
    runner = make_runner(workers=1, drain_timeout=0)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    queued = [runner.submit(int, i) for i in range(250)]
    stopper = threading.Thread(target=runner.shutdown)
    stopper.start()
    for handle in queued:
        assert handle.wait(WAIT) and handle.cancelled()
    gate.release.set()
    stopper.join(WAIT)
    lines = [r.getMessage() for r in caplog.records if "dropped tasks" in r.getMessage()]
    assert [line.split(":")[1] for line in lines] == [
        " dropped tasks 1-100 of 250",
        " dropped tasks 101-200 of 250",
        " dropped tasks 201-250 of 250",
    ]
    logged = " ".join(lines)
    assert all(h.id in logged for h in queued)


def test_shutdown_cancel_pending(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    first = runner.submit(gate.task)
    gate.wait_started()
    pending = [runner.submit(int, i) for i in range(3)]
    stopper = threading.Thread(target=runner.shutdown, kwargs={"cancel_pending": True})
    stopper.start()
    for handle in pending:
        assert handle.wait(WAIT) and handle.cancel_reason == "cancelled at shutdown"
    gate.release.set()
    stopper.join(WAIT)
    assert first.result(timeout=WAIT) is None


def test_shutdown_without_wait_finishes_in_background(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    handle = runner.submit(gate.task)
    gate.wait_started()
    runner.shutdown(wait=False)
    assert runner.closed
    gate.release.set()
    assert runner._closed_event.wait(WAIT)
    assert handle.state is State.SUCCEEDED


def test_shutdown_wait_after_shutdown_without_wait_returns_after_the_drain_thread(make_runner):
    runner = make_runner(workers=1)
    gate = Gate()
    runner.submit(gate.task)
    gate.wait_started()
    runner.shutdown(wait=False)
    drainer = runner._drainer
    assert drainer is not None and drainer.is_alive()
    gate.release.set()
    runner.shutdown(wait=True)  # the second call waits for the first one's drain thread
    assert not drainer.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith(runner.name + "-")]


def test_context_manager_shuts_down(clock):
    with Runner(workers=1, clock=clock) as runner:
        handle = runner.submit(int, 3)
    assert runner.closed
    assert handle.result(timeout=0) == 3


def test_new_runner_that_never_ran_shuts_down_cleanly():
    runner = Runner(workers=1)
    runner.shutdown()
    assert runner.closed
    with pytest.raises(RunnerClosedError):
        runner.submit(int)


def test_coroutine_function_runs_on_the_runners_loop(make_runner):
    runner = make_runner(workers=1)

    async def coro() -> str:
        return "awaited"

    handle = runner.submit(coro)
    assert handle.result(timeout=WAIT) == "awaited"  # more in test_async.py


def test_system_exit_in_task_is_a_failure_not_a_dead_worker(make_runner):
    import sys

    runner = make_runner(workers=1)
    handle = runner.submit(sys.exit, 3)
    with pytest.raises(SystemExit):
        handle.result(timeout=WAIT)
    assert runner.submit(int, 5).result(timeout=WAIT) == 5


def test_concurrency_never_exceeds_workers_high_water_mark(make_runner):
    runner = make_runner(workers=4)
    lock = threading.Lock()
    current = 0
    high = 0
    threads_seen: set[int] = set()
    barrier = threading.Barrier(4, timeout=WAIT)

    def task(i: int) -> None:
        nonlocal current, high
        with lock:
            current += 1
            high = max(high, current)
            threads_seen.add(threading.get_ident())
        if i < 4:
            barrier.wait()  # the first four provably run at the same time
        with lock:
            current -= 1

    for i in range(400):
        runner.submit(task, i)
    assert runner.join(timeout=WAIT)
    assert high == 4
    assert len(threads_seen) <= 4
    assert runner.stats().succeeded == 400


def test_a_builtin_method_is_named_after_its_type():
    with Runner(workers=1) as runner:
        items: list[int] = []
        handle = runner.submit(items.append, 1)
        assert handle.result(timeout=WAIT) is None and items == [1]
        assert handle.name == "builtins.list.append"


def test_offload_stats_before_the_first_task_creates_no_runner():
    offload.configure(workers=3)
    stats = offload.stats()
    assert (stats.workers, stats.submitted, stats.threads) == (3, 0, 0)
    offload.configure(workers=5)  # still possible: nothing was started
    assert offload.stats().workers == 5
    assert offload.submit(int, "2").result(timeout=WAIT) == 2
    assert offload.stats().submitted == 1
