"""Expiry: apply_async(expires=...) marks a task that has not started EXPIRED."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

import offload
from offload import ConfigurationError, Runner, State, TaskExpiredError
from offload.testing import FakeClock, use_runner

from .conftest import WAIT


@pytest.fixture
def runner(fake_clock: FakeClock):
    r = Runner(workers=1, clock=fake_clock)
    with use_runner(r):
        yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


@offload.task(name="tests.expiry.echo")
def echo(value: object) -> object:
    return value


def test_a_queued_task_expires_behind_a_busy_worker(runner, fake_clock):
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        assert release.wait(WAIT)

    blocker = runner.submit(busy)
    assert started.wait(WAIT)
    handle = echo.apply_async(args=(1,), expires=30)
    fake_clock.advance(30)
    with pytest.raises(TaskExpiredError, match="expired before it started"):
        handle.result(timeout=WAIT)
    assert handle.state is State.EXPIRED
    assert handle.done() and not handle.cancelled()
    release.set()
    assert blocker.wait(WAIT)
    assert runner.join(WAIT)
    assert handle.attempts == 0
    stats = runner.stats()
    assert stats.expired == 1 and stats.queued == 0 and stats.counts[State.EXPIRED] == 1
    record = runner.history.fetch(handle.id)  # the history store names the state too
    assert record is not None and record.state == "expired" and runner.history.counts()["expired"] == 1


def test_a_scheduled_task_expires_before_its_eta_is_not_allowed(runner):
    with pytest.raises(
        ConfigurationError, match=r"task 'tests.expiry.echo': expires .* must be after the task's start"
    ):
        echo.apply_async(args=(1,), countdown=60, expires=30)


def test_a_scheduled_task_runs_if_it_starts_before_expiry(runner, fake_clock):
    handle = echo.apply_async(args=(2,), countdown=10, expires=20)
    assert handle.state is State.SCHEDULED
    fake_clock.advance(10)
    assert handle.result(timeout=WAIT) == 2
    fake_clock.advance(20)  # the expiry timer is stale now
    assert runner.join(WAIT)
    assert handle.state is State.SUCCEEDED
    assert runner.stats().expired == 0


def test_a_scheduled_task_expires_while_waiting_for_a_worker(runner, fake_clock):
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        assert release.wait(WAIT)

    runner.submit(busy)
    assert started.wait(WAIT)
    handle = echo.apply_async(args=(3,), countdown=5, expires=8)
    fake_clock.advance(8)
    with pytest.raises(TaskExpiredError):
        handle.exception(timeout=WAIT)
    release.set()
    assert runner.join(WAIT)
    assert runner.stats().expired == 1


def test_expires_as_an_aware_datetime(runner, fake_clock):
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        assert release.wait(WAIT)

    runner.submit(busy)
    assert started.wait(WAIT)
    when = datetime.fromtimestamp(fake_clock.time(), timezone.utc) + timedelta(seconds=45)
    handle = echo.apply_async(args=(4,), expires=when)
    fake_clock.advance(44)
    assert not handle.done()
    fake_clock.advance(1)
    assert handle.wait(WAIT) and handle.state is State.EXPIRED
    release.set()


def test_expired_done_callbacks_run(runner, fake_clock):
    release = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        assert release.wait(WAIT)

    runner.submit(busy)
    assert started.wait(WAIT)
    seen = threading.Event()
    handle = echo.apply_async(args=(5,), expires=1)
    handle.add_done_callback(lambda h: seen.set())
    fake_clock.advance(1)
    assert seen.wait(WAIT)
    release.set()


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        (0, "expires must be a finite number of seconds > 0"),
        (-1, "expires must be a finite number of seconds > 0"),
        ("soon", "expires must be a number of seconds"),
        (datetime(2020, 1, 1), "expires must be timezone-aware"),
        (datetime(2020, 1, 1, tzinfo=timezone.utc), "expires is in the past"),
    ],
)
def test_bad_expires(runner, expires, message):
    with pytest.raises(ConfigurationError, match=r"task 'tests.expiry.echo': " + message):
        echo.apply_async(args=(1,), expires=expires)


def test_expires_before_an_eta_datetime_is_refused(runner, fake_clock):
    now = datetime.fromtimestamp(fake_clock.time(), timezone.utc)
    with pytest.raises(
        ConfigurationError, match=r"task 'tests.expiry.echo': expires .* must be after the task's start"
    ):
        echo.apply_async(args=(1,), eta=now + timedelta(minutes=10), expires=now + timedelta(minutes=5))
    assert runner.stats().submitted == 0


def test_finished_tasks_mark_their_expiry_timer_stale(runner):
    before = runner._stale_timers
    handle = echo.apply_async(args=(6,), expires=3600)
    assert handle.result(timeout=WAIT) == 6
    assert runner.join(WAIT)
    assert runner._stale_timers == before + 1
    assert handle._flow is None  # the history keeps the outcome only
