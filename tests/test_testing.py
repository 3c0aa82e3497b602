"""offload.testing: eager mode, FakeClock, the pytest plugin's fixtures."""

from __future__ import annotations

import threading

import pytest

import offload
from offload import State
from offload.testing import FakeClock, eager

from .conftest import WAIT

attempts: list[int] = []


@offload.task(name="tests.testing.flaky", retries=3, backoff=100.0)
def flaky() -> str:
    attempts.append(1)
    if len(attempts) < 3:
        raise ConnectionError("down")
    return "ok"


@offload.task(name="tests.testing.hopeless", retries=1)
def hopeless() -> None:
    raise ValueError("never")


def test_eager_runs_inline_with_retries_and_no_waiting():
    attempts.clear()
    caller = threading.get_ident()
    with eager() as runner:
        ran_in: list[int] = []
        handle = offload.submit(lambda: ran_in.append(threading.get_ident()))
        assert handle.done() and ran_in == [caller]
        handle = flaky.delay()
        assert handle.done()  # backoff of 100 s was not slept
        assert handle.result() == "ok" and handle.attempts == 3
        failed = hopeless.delay()
        assert failed.state is State.FAILED and failed.attempts == 2
        with pytest.raises(ValueError, match="never"):
            failed.result()
        later = flaky.apply_async(countdown=3600)
        assert later.done()
        stats = runner.stats()
        assert stats.succeeded == 3 and stats.failed == 1 and stats.retries == 3
    assert runner.closed


def test_fake_clock_advances_only_when_told():
    clock = FakeClock(start=10.0, wall=1000.0)
    assert clock.monotonic() == 10.0 and clock.time() == 1000.0
    clock.advance(2.5)
    assert clock.monotonic() == 12.5 and clock.time() == 1002.5
    with pytest.raises(ValueError, match="seconds >= 0"):
        clock.advance(-1)


def test_fake_clock_wait_returns_when_deadline_passed():
    clock = FakeClock()
    cond = threading.Condition()
    woke = threading.Event()

    def waiter() -> None:
        with cond:
            clock.wait(cond, 5.0)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    # advance until the waiter is woken; advance() wakes registered waiters
    for _ in range(1000):
        clock.advance(5.0)
        if woke.wait(0.01):
            break
    thread.join(WAIT)
    assert woke.is_set()
    with cond:
        clock.wait(cond, 1.0)  # deadline already passed: returns at once


def test_runner_fixture_is_the_default_runner(runner, fake_clock):
    assert offload.default_runner() is runner
    assert runner._clock is fake_clock
    handle = offload.submit(int, 8)
    assert handle.result(timeout=WAIT) == 8
