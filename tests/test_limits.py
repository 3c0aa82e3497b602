"""Rate and concurrency limits: tasks over a limit wait queued, without holding a
worker, and start when a token is due or a slot frees. Stepped with the fake clock."""

from __future__ import annotations

import queue
import threading

import pytest

import offload
from offload import ConfigurationError, Runner, State
from offload._limits import BURST_SECONDS, parse_rate
from offload.testing import FakeClock

from .conftest import WAIT


@pytest.fixture
def runner(fake_clock: FakeClock):
    r = Runner(workers=4, clock=fake_clock)
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def recorder(name: str, **options):
    ran: queue.Queue[int] = queue.Queue()

    @offload.task(name=name, **options)
    def record(i: int) -> int:
        ran.put(i)
        return i

    return record, ran


def drain(q: queue.Queue[int]) -> list[int]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def test_rate_limit_spaces_starts_and_keeps_order(runner, fake_clock):
    task, ran = recorder("tests.limits.rate", rate_limit="10/s")
    handles = [runner.submit(task, i) for i in range(5)]
    assert ran.get(timeout=WAIT) == 0  # the bucket starts with one token
    assert handles[0].wait(WAIT)
    # the others wait queued, not running and not holding workers
    assert [h.state for h in handles[1:]] == [State.QUEUED] * 4
    assert runner.stats().queued == 4 and runner.stats().running == 0
    for expected in range(1, 5):
        fake_clock.advance(0.099)
        assert ran.empty()
        fake_clock.advance(0.001)
        assert ran.get(timeout=WAIT) == expected
    assert all(h.wait(WAIT) for h in handles)
    assert runner.stats().succeeded == 5


def test_rate_limited_tasks_do_not_hold_workers(fake_clock):
    with Runner(workers=1, clock=fake_clock) as runner:
        limited, ran = recorder("tests.limits.no_hold", rate_limit="1/m")
        first = [runner.submit(limited, i) for i in range(3)]
        assert ran.get(timeout=WAIT) == 0
        # the only worker is free for other work while two limited tasks wait
        other = runner.submit(lambda: "free")
        assert other.result(timeout=WAIT) == "free"
        assert [h.state for h in first[1:]] == [State.QUEUED, State.QUEUED]
        fake_clock.advance(60)
        assert ran.get(timeout=WAIT) == 1
        fake_clock.advance(60)
        assert ran.get(timeout=WAIT) == 2


def test_concurrency_limit_bounds_running_attempts(runner):
    gate = threading.Event()
    lock = threading.Lock()
    running = 0
    high_water = 0
    started: queue.Queue[int] = queue.Queue()

    @offload.task(name="tests.limits.concurrency", concurrency=2)
    def bounded(i: int) -> int:
        nonlocal running, high_water
        with lock:
            running += 1
            high_water = max(high_water, running)
        started.put(i)
        assert gate.wait(WAIT)
        with lock:
            running -= 1
        return i

    handles = [runner.submit(bounded, i) for i in range(6)]
    assert {started.get(timeout=WAIT), started.get(timeout=WAIT)} == {0, 1}
    # two workers are free, yet nothing else of this task starts
    other = runner.submit(lambda: "other")
    assert other.result(timeout=WAIT) == "other"
    assert started.empty()
    assert runner.stats().running == 2 and runner.stats().queued == 4
    gate.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(6))
    assert high_water == 2


def test_concurrency_slot_is_freed_by_a_retry(runner, fake_clock):
    attempts: queue.Queue[str] = queue.Queue()
    calls = {"a": 0}

    @offload.task(name="tests.limits.retry_slot", concurrency=1, retries=1, backoff=10.0, jitter=False)
    def flaky(label: str) -> str:
        attempts.put(label)
        if label == "a":
            calls["a"] += 1
            if calls["a"] == 1:
                raise ConnectionError("once")
        return label

    first = runner.submit(flaky, "a")
    assert attempts.get(timeout=WAIT) == "a"
    second = runner.submit(flaky, "b")  # starts while "a" waits for its retry
    assert second.result(timeout=WAIT) == "b"
    fake_clock.advance(10.0)
    assert first.result(timeout=WAIT) == "a"


def test_a_parked_task_can_be_cancelled(runner, fake_clock):
    task, ran = recorder("tests.limits.cancel", rate_limit="1/h")
    first = runner.submit(task, 0)
    assert first.wait(WAIT)
    parked = runner.submit(task, 1)
    later = runner.submit(task, 2)
    assert parked.cancel()
    assert parked.state is State.CANCELLED
    fake_clock.advance(3600)
    assert later.result(timeout=WAIT) == 2
    assert drain(ran) == [0, 2]


def test_parked_tasks_are_dropped_and_logged_at_shutdown(fake_clock, caplog):
    runner = Runner(workers=2, clock=fake_clock, drain_timeout=0.0)
    task, _ = recorder("tests.limits.shutdown", rate_limit="1/h")
    first = runner.submit(task, 0)
    assert first.wait(WAIT)
    waiting = [runner.submit(task, i) for i in range(1, 4)]
    runner.shutdown(wait=True)
    assert all(h.state is State.CANCELLED for h in waiting)
    assert runner.stats().queued == 0
    assert "dropped 3 task(s)" in caplog.text


def test_parked_tasks_cancelled_with_cancel_pending(fake_clock):
    runner = Runner(workers=2, clock=fake_clock)
    gate = threading.Event()
    blocker_started = threading.Event()

    @offload.task(name="tests.limits.cancel_pending.block", concurrency=1)
    def block() -> None:
        blocker_started.set()
        assert gate.wait(WAIT)

    runner.submit(block)
    assert blocker_started.wait(WAIT)
    parked = runner.submit(block)
    runner.shutdown(wait=False, cancel_pending=True, timeout=WAIT)
    assert parked.wait(WAIT)
    assert parked.state is State.CANCELLED
    gate.set()
    runner.shutdown(wait=True)


def test_limits_are_per_runner(fake_clock):
    task, _ = recorder("tests.limits.per_runner", rate_limit="1/h")
    with Runner(workers=1, clock=fake_clock) as one, Runner(workers=1, clock=fake_clock) as two:
        assert one.submit(task, 1).result(timeout=WAIT) == 1
        assert two.submit(task, 2).result(timeout=WAIT) == 2
        late = one.submit(task, 3)  # one's bucket is empty for an hour
        assert not late.wait(0.05)
        assert late.state is State.QUEUED
        assert late.cancel()


def test_rate_parsing():
    assert parse_rate("x", "10/s").per_second == 10
    assert parse_rate("x", "100/m").per_second == pytest.approx(100 / 60)
    assert parse_rate("x", "1000/h").per_second == pytest.approx(1000 / 3600)
    assert parse_rate("x", "1/10s").per_second == pytest.approx(0.1)
    assert parse_rate("x", " 5 / d ").per_second == pytest.approx(5 / 86400)
    assert parse_rate("x", "2000/s").capacity == 2000 * BURST_SECONDS
    assert parse_rate("x", "10/s").capacity == 1.0
    assert parse_rate("x", None) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "10"}, "rate_limit must look like '10/s'"),
        ({"rate_limit": "10/w"}, "rate_limit must look like '10/s'"),
        ({"rate_limit": "ten/s"}, "rate_limit must look like '10/s'"),
        ({"rate_limit": "0/s"}, "rate_limit must allow at least some tasks"),
        ({"rate_limit": "1/0s"}, "rate_limit must allow at least some tasks"),
        ({"rate_limit": "-1/s"}, "rate_limit must look like"),
        ({"rate_limit": 10}, "rate_limit must be a string"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"concurrency": -2}, "concurrency must be >= 1"),
        ({"concurrency": 1.5}, "concurrency must be an int"),
        ({"concurrency": True}, "concurrency must be an int"),
    ],
)
def test_bad_limits(options, message):
    with pytest.raises(ConfigurationError, match=r"task 'tests.limits.bad': " + message):
        offload.task(name="tests.limits.bad", **options)(lambda: None)


def test_a_parked_task_expires(runner, fake_clock):
    from offload.testing import use_runner

    task, ran = recorder("tests.limits.expire", rate_limit="1/m")
    with use_runner(runner):
        first = task.apply_async(args=(0,))
        assert first.wait(WAIT)
        parked = task.apply_async(args=(1,), expires=30)
        after = task.apply_async(args=(2,))
        fake_clock.advance(30)
        with pytest.raises(offload.TaskExpiredError):
            parked.result(timeout=WAIT)
        fake_clock.advance(30)
        assert after.result(timeout=WAIT) == 2
    assert drain(ran) == [0, 2]
    assert runner.stats().expired == 1


def test_parked_tasks_leave_nothing_to_spin_on(runner, fake_clock):
    from offload._timers import TIMER_LIMIT

    task, ran = recorder("tests.limits.no_spin", rate_limit="1/h")
    handles = [runner.submit(task, i) for i in range(50)]
    # Popped after every task above (lower priority): once it ran, all of them were taken.
    marker = runner._enqueue(lambda: "after", (), {}, priority=-1)
    assert marker.result(timeout=WAIT) == "after"
    assert ran.get(timeout=WAIT) == 0
    assert handles[0].wait(WAIT)
    with runner._lock:
        limiter = runner._flow_state.limiters["tests.limits.no_spin"]
        # every waiting task is parked off the ready queue, behind one wake-up timer
        assert len(limiter.parked) == 49
        assert list(runner._ready) == []
        assert [entry[2] for entry in runner._timers] == [TIMER_LIMIT]
        assert runner._n_running == 0
    for handle in handles[1:]:
        handle.cancel()


def test_a_released_task_cancelled_before_it_starts_passes_its_slot_on(fake_clock):
    # Driven by hand under the runner lock, doing what a worker does on each pop,
    # while the only worker is held by an unrelated task: the order is exact.
    from offload._flow import attempt_ended_locked, may_start_locked

    runner = Runner(workers=1, clock=fake_clock)
    gate, busy = threading.Event(), threading.Event()

    def blocker() -> None:
        busy.set()
        assert gate.wait(WAIT)

    runner.submit(blocker)
    assert busy.wait(WAIT)
    task, ran = recorder("tests.limits.released_cancelled", concurrency=1)
    a, b, c = (runner.submit(task, i) for i in range(3))
    with runner._lock:
        assert runner._ready.pop() is a and may_start_locked(runner, a)  # a takes the slot
        assert runner._ready.pop() is b and not may_start_locked(runner, b)  # parked
        assert runner._ready.pop() is c and not may_start_locked(runner, c)  # parked behind b
        attempt_ended_locked(runner, a)  # a's attempt "ends": b is released to the ready queue
        assert list(runner._ready) == [b]
    assert b.cancel()  # cancelled before any worker took it
    with runner._lock:
        assert list(runner._ready) == [b, c]  # b's slot went to c (b's entry is skipped when popped)
    assert a.cancel()
    gate.set()
    assert c.result(timeout=WAIT) == 2
    assert drain(ran) == [2]
    runner.shutdown()


def test_concurrency_bound_holds_under_load():
    # Real threads racing: 8 workers, 300 short tasks of two limited names plus plain ones.
    lock = threading.Lock()
    running = {"a": 0, "b": 0}
    high = {"a": 0, "b": 0}

    def make(label: str, limit: int):
        @offload.task(name=f"tests.limits.load.{label}", concurrency=limit)
        def work(i: int) -> int:
            with lock:
                running[label] += 1
                high[label] = max(high[label], running[label])
            threading.Event().wait(0.0005)  # hold the slot briefly so that attempts overlap
            with lock:
                running[label] -= 1
            return i

        return work

    a, b = make("a", 3), make("b", 1)
    with Runner(workers=8) as runner:
        handles = [runner.submit(a if i % 3 else b, i) for i in range(300)]
        handles += [runner.submit(int, i) for i in range(100)]
        assert [h.result(timeout=WAIT) for h in handles[:300]] == list(range(300))
        assert runner.join(WAIT)
        stats = runner.stats()
    assert high["a"] <= 3 and high["b"] == 1
    assert stats.succeeded == 400 and stats.queued == 0
