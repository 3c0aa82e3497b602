"""Unique tasks: while a task with the same key is queued or running, enqueueing
it again returns the existing handle."""

from __future__ import annotations

import threading

import pytest

import offload
from offload import ConfigurationError, EnqueueError, Runner, State
from offload.testing import FakeClock, use_runner

from .conftest import WAIT


class EnqueueCount(offload.Hook):
    def __init__(self) -> None:
        self.count = 0

    def before_enqueue(self, handle: offload.TaskHandle) -> None:
        self.count += 1


@pytest.fixture
def hook() -> EnqueueCount:
    return EnqueueCount()


@pytest.fixture
def runner(fake_clock: FakeClock, hook: EnqueueCount):
    r = Runner(workers=2, clock=fake_clock, hooks=[hook])
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def gated(name: str, **options):
    gate = threading.Event()
    started = threading.Event()

    @offload.task(name=name, **options)
    def fn(*args: object, **kwargs: object) -> tuple[object, ...]:
        started.set()
        assert gate.wait(WAIT)
        return args

    return fn, gate, started


def test_same_arguments_return_the_existing_handle_while_running(runner, hook):
    fn, gate, started = gated("tests.unique.running", unique=True)
    first = runner.submit(fn, 1, mode="full")
    assert started.wait(WAIT)
    again = runner.submit(fn, 1, mode="full")
    assert again is first
    other = runner.submit(fn, 2, mode="full")
    assert other is not first
    gate.set()
    assert first.result(timeout=WAIT) == (1,)
    assert other.result(timeout=WAIT) == (2,)
    assert runner.stats().submitted == 2
    assert hook.count == 2  # the duplicate never reached before_enqueue


def test_a_new_task_is_accepted_once_the_first_finished(runner):
    fn, gate, _ = gated("tests.unique.after", unique=True)
    gate.set()
    first = runner.submit(fn, [1, 2])  # unhashable arguments are fine
    assert first.result(timeout=WAIT) == ([1, 2],)
    second = runner.submit(fn, [1, 2])
    assert second is not first
    assert second.result(timeout=WAIT) == ([1, 2],)


def test_unique_while_scheduled_and_after_cancel(runner):
    fn, gate, _ = gated("tests.unique.scheduled", unique=True)
    gate.set()
    with use_runner(runner):
        first = fn.apply_async(args=(1,), countdown=60)
        assert first.state is State.SCHEDULED
        assert fn.apply_async(args=(1,), countdown=5) is first
    assert first.cancel()
    replacement = runner.submit(fn, 1)
    assert replacement is not first
    assert replacement.result(timeout=WAIT) == (1,)


def test_unique_key_function(runner):
    fn, gate, started = gated("tests.unique.key", unique_key=lambda account, **kw: account)
    first = runner.submit(fn, "acme", note="a")
    assert started.wait(WAIT)
    assert runner.submit(fn, "acme", note="b") is first
    assert runner.submit(fn, "globex", note="a") is not first
    gate.set()
    assert runner.join(WAIT)


def test_unique_key_that_raises_is_an_enqueue_error(runner):
    @offload.task(name="tests.unique.raises", unique_key=lambda x: x["id"])
    def fn(x: object) -> None:
        pass

    with pytest.raises(EnqueueError, match=r"task 'tests.unique.raises': unique_key raised TypeError") as caught:
        runner.submit(fn, 5)
    assert isinstance(caught.value.__cause__, TypeError)
    assert runner.stats().submitted == 0


def test_unique_key_must_be_hashable(runner):
    @offload.task(name="tests.unique.unhashable", unique_key=lambda x: [x])
    def fn(x: object) -> None:
        pass

    with pytest.raises(EnqueueError, match=r"task 'tests.unique.unhashable': unique_key must return a hashable"):
        runner.submit(fn, 5)


def test_bound_tasks_key_on_their_own_arguments(runner):
    fn, gate, started = gated("tests.unique.bound", unique=True, bind=True)
    first = runner.submit(fn, 1)
    assert started.wait(WAIT)
    assert runner.submit(fn, 1) is first
    gate.set()
    assert runner.join(WAIT)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique": "yes"}, "unique must be True or False"),
        ({"unique_key": "account_id"}, "unique_key must be a function"),
    ],
)
def test_bad_unique_options(options, message):
    with pytest.raises(ConfigurationError, match=r"task 'tests.unique.bad': " + message):
        offload.task(name="tests.unique.bad", **options)(lambda: None)
