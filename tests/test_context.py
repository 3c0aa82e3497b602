"""Task context: bind=True and the django.tasks-style ``context`` first parameter,
and cooperative cancellation of a running task."""

from __future__ import annotations

import queue
import threading

import pytest

import offload
from offload import Retry, Runner, State, TaskContext

from .conftest import WAIT


class RetryWatch(offload.Hook):
    def __init__(self) -> None:
        self.scheduled: queue.Queue[float] = queue.Queue()

    def after_retry_scheduled(self, handle: offload.TaskHandle, exc: BaseException, delay: float) -> None:
        self.scheduled.put(delay)


@pytest.fixture
def watch() -> RetryWatch:
    return RetryWatch()


@pytest.fixture
def runner(fake_clock, watch):
    r = Runner(workers=2, clock=fake_clock, hooks=[watch])
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def test_bind_passes_the_context_first(runner):
    seen: list[tuple[str | None, int, int, object]] = []

    @offload.task(name="tests.context.bound", bind=True, retries=2)
    def bound(context: TaskContext, value: int) -> int:
        seen.append((context.id, context.attempt, context.retries_left, value))
        return value * 2

    handle = runner.submit(bound, 21)
    assert handle.result(timeout=WAIT) == 42
    assert seen == [(handle.id, 1, 2, 21)]


def test_a_first_parameter_named_context_binds_without_the_flag(runner):
    @offload.task(name="tests.context.django_style")
    def django_style(context, value):
        return (context.name, value)

    assert django_style.options.bind
    assert runner.submit(django_style, 3).result(timeout=WAIT) == ("tests.context.django_style", 3)


def test_a_parameter_named_context_elsewhere_does_not_bind():
    @offload.task(name="tests.context.not_first")
    def not_first(value, context=None):
        return value

    assert not not_first.options.bind


def test_context_counts_attempts_and_retries_left(runner, fake_clock, watch):
    seen: queue.Queue[tuple[int, int]] = queue.Queue()

    @offload.task(name="tests.context.counts", bind=True, retries=2, backoff=1.0, jitter=False)
    def counts(context: TaskContext) -> str:
        seen.put((context.attempt, context.retries_left))
        if context.retries_left:
            context.retry(delay=5.0)
        return "done"

    handle = runner.submit(counts)
    assert seen.get(timeout=WAIT) == (1, 2)
    assert watch.scheduled.get(timeout=WAIT) == 5.0
    fake_clock.advance(5.0)
    assert seen.get(timeout=WAIT) == (2, 1)
    assert watch.scheduled.get(timeout=WAIT) == 5.0
    fake_clock.advance(5.0)
    assert seen.get(timeout=WAIT) == (3, 0)
    assert handle.result(timeout=WAIT) == "done"
    assert handle.attempts == 3


def test_context_retry_raises_retry_with_its_delay():
    context = TaskContext(None, "x", 1)
    with pytest.raises(Retry) as caught:
        context.retry(delay=3)
    assert caught.value.delay == 3.0


def test_inline_call_of_a_bound_task_gets_a_context():
    @offload.task(name="tests.context.inline", bind=True, retries=4)
    def inline(context: TaskContext, value: int) -> tuple[object, int, int, int]:
        return (context.id, context.attempt, context.retries_left, value)

    assert inline(7) == (None, 1, 4, 7)


def test_cancel_of_a_running_task_sets_its_cancelled_event(runner):
    started = threading.Event()

    @offload.task(name="tests.context.cooperative", bind=True, retries=3)
    def cooperative(context: TaskContext) -> str:
        started.set()
        if context.cancelled.wait(WAIT):
            return "stopped early"
        return "ran to the end"

    handle = runner.submit(cooperative)
    assert started.wait(WAIT)
    assert handle.cancel() is False  # running: not cancelled, but asked to stop
    assert handle.result(timeout=WAIT) == "stopped early"


def test_a_running_task_asked_to_cancel_gets_no_retry(runner):
    started = threading.Event()

    @offload.task(name="tests.context.no_retry_after_cancel", bind=True, retries=5)
    def stops(context: TaskContext) -> None:
        started.set()
        assert context.cancelled.wait(WAIT)
        raise ConnectionError("gave up because cancelled")

    handle = runner.submit(stops)
    assert started.wait(WAIT)
    assert handle.cancel() is False
    with pytest.raises(ConnectionError):
        handle.result(timeout=WAIT)
    assert handle.attempts == 1
    assert handle.state is State.FAILED


def test_bind_must_be_a_flag():
    with pytest.raises(offload.ConfigurationError, match=r"task 'tests.context.bad_bind': bind must be True or False"):
        offload.task(name="tests.context.bad_bind", bind="yes")(lambda context: None)


def test_drain_timeout_asks_running_tasks_to_stop(fake_clock):
    runner = Runner(workers=1, clock=fake_clock, drain_timeout=5.0)
    started = threading.Event()

    @offload.task(name="tests.context.long_running", bind=True)
    def long_running(context: TaskContext) -> str:
        started.set()
        assert context.cancelled.wait(WAIT)
        return "stopped at shutdown"

    handle = runner.submit(long_running)
    assert started.wait(WAIT)
    runner.shutdown(wait=False)
    fake_clock.advance(5.0)  # the drain deadline passes with the task still running
    assert handle.result(timeout=WAIT) == "stopped at shutdown"
    runner.shutdown(wait=True)


def test_the_context_is_not_one_of_the_recorded_arguments(runner):
    from offload.dashboard import LiveSource

    seen: queue.Queue[tuple[str | None, int, int]] = queue.Queue()

    @offload.task(name="tests.context.retried_from_dashboard", bind=True)
    def fails_once(context: TaskContext, value: int) -> int:
        seen.put((context.id, context.attempt, value))
        if seen.qsize() == 1:
            raise ValueError("first time")
        return value

    failed = runner.submit(fails_once, 5)
    with pytest.raises(ValueError, match="first time"):
        failed.result(timeout=WAIT)
    assert failed._args == (5,)  # what the caller passed, no context
    new_id = LiveSource(runner).retry(failed.id)
    assert runner.get(new_id).result(timeout=WAIT) == 5
    assert seen.get(timeout=WAIT) == (failed.id, 1, 5)
    assert seen.get(timeout=WAIT) == (new_id, 1, 5)  # a fresh context for the new task


def test_cancel_of_a_running_task_without_context_prevents_its_retries(runner):
    started = threading.Event()
    go_on = threading.Event()

    @offload.task(name="tests.context.plain_cancel", retries=5)
    def plain() -> None:
        started.set()
        assert go_on.wait(WAIT)
        raise ConnectionError("transient, but cancelled")

    handle = runner.submit(plain)
    assert started.wait(WAIT)
    assert handle.cancel() is False
    go_on.set()
    with pytest.raises(ConnectionError):
        handle.result(timeout=WAIT)
    assert handle.attempts == 1
