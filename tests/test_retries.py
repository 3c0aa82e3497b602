"""Retries, stepped with the fake clock: no test waits for a real backoff."""

from __future__ import annotations

import queue
import threading

import pytest

import offload
from offload import RetriesExhaustedError, Retry, Runner, State
from offload.testing import FakeClock

from .conftest import WAIT


class Flaky:
    """Fails ``failures`` times with ``exc``, then returns ``value``; reports each attempt."""

    def __init__(self, failures: int, exc: BaseException | None = None, value: object = "ok") -> None:
        self.failures = failures
        self.exc = exc or ConnectionError("flaky")
        self.value = value
        self.calls = 0
        self.attempted: queue.Queue[int] = queue.Queue()

    def __call__(self) -> object:
        self.calls += 1
        self.attempted.put(self.calls)
        if self.calls <= self.failures:
            raise self.exc
        return self.value


class RetryWatch(offload.Hook):
    """Reports each scheduled retry: (attempt, delay)."""

    def __init__(self) -> None:
        self.scheduled: queue.Queue[tuple[int, float]] = queue.Queue()

    def after_retry_scheduled(self, handle: offload.TaskHandle, exc: BaseException, delay: float) -> None:
        self.scheduled.put((handle.attempts, delay))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watch() -> RetryWatch:
    return RetryWatch()


@pytest.fixture
def runner(clock: FakeClock, watch: RetryWatch):
    r = Runner(workers=2, clock=clock, hooks=[watch])
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def declare(fn, **options):
    return offload.task(name=f"tests.retries.{id(fn)}", **options)(fn)


def test_backoff_doubles_and_is_capped_without_jitter(runner, clock, watch):
    flaky = Flaky(failures=4)
    task = declare(flaky, retries=5, backoff=2.0, max_backoff=10.0, jitter=False)
    handle = runner.submit(task)
    delays = []
    for attempt in range(1, 5):
        got_attempt, delay = watch.scheduled.get(timeout=WAIT)
        assert got_attempt == attempt
        assert handle.state is State.RETRYING
        assert handle.next_attempt_at == pytest.approx(clock.time() + delay)
        delays.append(delay)
        clock.advance(delay - 0.001)
        assert flaky.attempted.qsize() == 0 or flaky.attempted.get(timeout=WAIT) == attempt
        clock.advance(0.001)
    assert delays == [2.0, 4.0, 8.0, 10.0]
    assert handle.result(timeout=WAIT) == "ok"
    assert handle.attempts == 5
    stats = runner.stats()
    assert stats.retries == 4 and stats.failed_attempts == 4 and stats.succeeded == 1


def test_retry_not_started_before_its_delay(runner, clock, watch):
    flaky = Flaky(failures=1)
    handle = runner.submit(declare(flaky, retries=1, backoff=5.0, jitter=False))
    assert watch.scheduled.get(timeout=WAIT) == (1, 5.0)
    clock.advance(4.999)
    assert not handle.wait(0.05)
    assert flaky.calls == 1
    clock.advance(0.001)
    assert handle.result(timeout=WAIT) == "ok"
    assert flaky.calls == 2


def test_full_jitter_stays_within_the_cap(runner, clock, watch):
    flaky = Flaky(failures=6)
    handle = runner.submit(declare(flaky, retries=6, backoff=1.0, max_backoff=8.0, jitter=True))
    for attempt in range(1, 7):
        got, delay = watch.scheduled.get(timeout=WAIT)
        assert got == attempt
        assert 0.0 <= delay <= min(8.0, 2.0 ** (attempt - 1))
        clock.advance(delay)
    assert handle.result(timeout=WAIT) == "ok"


def test_retry_delay_formula_never_overflows():
    options = offload.TaskOptions.build("tests.x", retries=10_000, backoff=1.0, max_backoff=60.0, jitter=False)
    assert options.retry_delay(5000) == 60.0


def test_exhausted_retries_fail_with_the_last_exception(runner, clock, watch):
    error = ConnectionError("still down")
    flaky = Flaky(failures=10, exc=error)
    handle = runner.submit(declare(flaky, retries=2, backoff=1.0, jitter=False))
    for _ in range(2):
        _, delay = watch.scheduled.get(timeout=WAIT)
        clock.advance(delay)
    with pytest.raises(ConnectionError) as caught:
        handle.result(timeout=WAIT)
    assert caught.value is error
    assert handle.attempts == 3
    assert handle.state is State.FAILED
    assert runner.stats().failed_attempts == 3


def test_only_retry_on_exceptions_are_retried(runner, watch):
    flaky = Flaky(failures=1, exc=ValueError("bad input"))
    handle = runner.submit(declare(flaky, retries=3, retry_on=(ConnectionError,)))
    with pytest.raises(ValueError, match="bad input"):
        handle.result(timeout=WAIT)
    assert handle.attempts == 1
    assert watch.scheduled.empty()


def test_explicit_retry_uses_its_delay(runner, clock, watch):
    calls = []

    def wants_retry() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Retry(delay=42)
        return "second"

    handle = runner.submit(declare(wants_retry, retries=1))
    assert watch.scheduled.get(timeout=WAIT) == (1, 42.0)
    clock.advance(42)
    assert handle.result(timeout=WAIT) == "second"


def test_explicit_retry_is_forced_even_outside_retry_on(runner, clock, watch):
    calls = []

    def wants_retry() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Retry()
        return "done"

    handle = runner.submit(declare(wants_retry, retries=1, retry_on=(KeyError,), backoff=3.0, jitter=False))
    assert watch.scheduled.get(timeout=WAIT) == (1, 3.0)
    clock.advance(3)
    assert handle.result(timeout=WAIT) == "done"


def test_retry_without_retries_left_fails_with_exhausted(runner):
    cause = TimeoutError("upstream")

    def wants_retry() -> None:
        raise Retry(exc=cause)

    handle = runner.submit(declare(wants_retry))
    with pytest.raises(RetriesExhaustedError, match="no retries left") as caught:
        handle.result(timeout=WAIT)
    assert caught.value.__cause__ is cause
    assert handle.error is not None and handle.error.type == "offload.RetriesExhaustedError"


def test_cancel_while_waiting_for_a_retry(runner, clock, watch):
    flaky = Flaky(failures=1)
    handle = runner.submit(declare(flaky, retries=1, backoff=100.0))
    watch.scheduled.get(timeout=WAIT)
    assert handle.state is State.RETRYING
    assert handle.cancel() is True  # waiting between attempts: nothing runs, so it can be cancelled
    clock.advance(200)
    assert runner.join(timeout=WAIT)
    assert flaky.calls == 1
    assert handle.state is State.CANCELLED and handle.attempts == 1
    assert runner.stats().retrying == 0


def test_retry_bad_delay():
    with pytest.raises(ValueError, match=r"Retry\(delay=...\) must be >= 0"):
        Retry(delay=-1)
    with pytest.raises(TypeError, match="must be seconds as a number"):
        Retry(delay="soon")  # type: ignore[arg-type]
    assert "in 5s" in str(Retry(delay=5))
    assert "after ValueError: x" in str(Retry(exc=ValueError("x")))


def test_each_failed_attempt_is_logged_as_warning_then_error(runner, clock, watch, caplog):
    flaky = Flaky(failures=5)
    handle = runner.submit(declare(flaky, retries=1, backoff=1.0, jitter=False))
    watch.scheduled.get(timeout=WAIT)
    clock.advance(1)
    handle.exception(timeout=WAIT)
    task_records = [r for r in caplog.records if r.name == "offload.task"]
    assert [r.levelname for r in task_records] == ["WARNING", "ERROR"]
    assert all(r.exc_info for r in task_records)
    assert "retry 1 of 1 in 1.00s" in task_records[0].getMessage()


def test_retry_scheduled_during_drain_after_deadline_is_dropped(clock, watch):
    started = threading.Event()

    class Started(offload.Hook):
        def before_attempt(self, handle: offload.TaskHandle) -> None:
            started.set()

    runner = Runner(workers=1, clock=clock, hooks=[watch, Started()], drain_timeout=10)
    release = threading.Event()

    def slow_then_fail() -> None:
        assert release.wait(WAIT)
        raise ConnectionError("down")

    handle = runner.submit(declare(slow_then_fail, retries=1, backoff=60.0, jitter=False))
    assert started.wait(WAIT)
    stopper = threading.Thread(target=runner.shutdown)
    stopper.start()
    with runner._lock:
        assert runner._space.wait_for(lambda: runner._state == runner._CLOSING, timeout=WAIT)
    release.set()
    assert handle.wait(WAIT)
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert handle.state is State.CANCELLED
    assert "retry was due after the drain deadline" in (handle.cancel_reason or "")


def test_retry_after_the_runner_closed_is_dropped(clock, watch):
    started = threading.Event()
    release = threading.Event()

    def fails_late() -> None:
        started.set()
        assert release.wait(WAIT)
        raise ConnectionError("down")

    runner = Runner(workers=1, clock=clock, hooks=[watch], drain_timeout=1)
    handle = runner.submit(declare(fails_late, retries=3, backoff=0.0, jitter=False))
    assert started.wait(WAIT)
    stopper = threading.Thread(target=runner.shutdown)
    stopper.start()
    with runner._lock:
        assert runner._space.wait_for(lambda: runner._state == runner._CLOSING, timeout=WAIT)
    clock.advance(1)  # the drain deadline passes with the attempt still running: the runner closes
    stopper.join(WAIT)
    assert not stopper.is_alive() and runner._state == runner._CLOSED
    release.set()
    assert handle.wait(WAIT)
    assert handle.state is State.CANCELLED and watch.scheduled.empty()
