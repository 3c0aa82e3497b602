"""Hooks: events, ordering, global functions, and hooks that raise."""

from __future__ import annotations

import sys
import threading

import pytest

import offload
from offload import Runner

from .conftest import WAIT


class Recorder(offload.Hook):
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag = tag
        self.log = log

    def before_enqueue(self, handle):
        self.log.append(f"{self.tag}:before_enqueue")

    def before_attempt(self, handle):
        self.log.append(f"{self.tag}:before_attempt:{handle.attempts}")

    def after_attempt(self, handle, exc):
        self.log.append(f"{self.tag}:after_attempt:{type(exc).__name__ if exc else None}")

    def after_success(self, handle, result):
        self.log.append(f"{self.tag}:after_success:{result}")

    def after_failure(self, handle, exc):
        self.log.append(f"{self.tag}:after_failure:{type(exc).__name__}")

    def after_retry_scheduled(self, handle, exc, delay):
        self.log.append(f"{self.tag}:after_retry_scheduled:{delay}")

    def on_shutdown(self, runner):
        self.log.append(f"{self.tag}:on_shutdown")


def test_events_in_order_before_forward_after_reversed():
    log: list[str] = []
    runner = Runner(workers=1, hooks=[Recorder("a", log), Recorder("b", log)])
    assert runner.submit(lambda: 5).result(timeout=WAIT) == 5
    runner.shutdown()
    assert log == [
        "a:before_enqueue",
        "b:before_enqueue",
        "a:before_attempt:1",
        "b:before_attempt:1",
        "b:after_attempt:None",
        "a:after_attempt:None",
        "b:after_success:5",
        "a:after_success:5",
        "b:on_shutdown",
        "a:on_shutdown",
    ]


def test_failure_and_retry_events():
    log: list[str] = []
    calls = []

    @offload.task(name="tests.hooks.flaky", retries=1, backoff=0.0, jitter=False)
    def flaky() -> None:
        calls.append(1)
        raise OSError("down")

    with Runner(workers=1, hooks=[Recorder("h", log)]) as runner:
        handle = runner.submit(flaky)
        handle.exception(timeout=WAIT)
    assert log[:8] == [
        "h:before_enqueue",
        "h:before_attempt:1",
        "h:after_attempt:OSError",
        "h:after_retry_scheduled:0.0",
        "h:before_attempt:2",
        "h:after_attempt:OSError",
        "h:after_failure:OSError",
        "h:on_shutdown",
    ]


def test_after_hooks_run_before_the_outcome_is_visible():
    seen: list[object] = []

    class Slow(offload.Hook):
        def after_success(self, handle, result):
            seen.append(handle.done())  # not yet done while the hook runs

    with Runner(workers=1, hooks=[Slow()]) as runner:
        handle = runner.submit(lambda: 1)
        handle.result(timeout=WAIT)
        assert seen == [False]  # result() returned, so the hook had run


def test_hook_that_raises_is_logged_counted_and_harmless(caplog):
    class Broken(offload.Hook):
        def before_enqueue(self, handle):
            raise RuntimeError("enqueue hook bug")

        def after_success(self, handle, result):
            raise RuntimeError("success hook bug")

    with Runner(workers=1, hooks=[Broken()]) as runner:
        assert runner.submit(lambda: "fine").result(timeout=WAIT) == "fine"
        assert runner.stats().hook_errors == 2
        assert runner.submit(lambda: "still fine").result(timeout=WAIT) == "still fine"
    messages = [r.getMessage() for r in caplog.records if r.name == "offload.runner"]
    assert sum("raised; ignored" in m for m in messages) == 4


def test_hook_that_calls_sys_exit_does_not_end_the_worker_thread(caplog):
    class Exits(offload.Hook):
        def before_attempt(self, handle):
            sys.exit(3)

    with Runner(workers=1, hooks=[Exits()]) as runner:
        assert runner.submit(lambda: "ran").result(timeout=WAIT) == "ran"
        assert runner.submit(lambda: "again").result(timeout=WAIT) == "again"  # the same thread lives
        assert runner.stats().hook_errors == 2
    assert sum("raised; ignored" in r.getMessage() for r in caplog.records) == 2


def test_global_on_and_off():
    seen: list[str] = []

    def on_failure(handle, exc):
        seen.append(f"{handle.name}:{exc}")

    assert offload.on("after_failure")(on_failure) is on_failure
    with Runner(workers=1) as first, Runner(workers=1) as second:
        first.submit(offload.task(name="tests.hooks.one")(lambda: 1 / 0)).exception(timeout=WAIT)
        second.submit(offload.task(name="tests.hooks.two")(lambda: {}["k"])).exception(timeout=WAIT)
        assert sorted(seen) == ["tests.hooks.one:division by zero", "tests.hooks.two:'k'"]
        assert offload.off("after_failure", on_failure) is True
        assert offload.off("after_failure", on_failure) is False
        first.submit(lambda: 1 / 0).exception(timeout=WAIT)
        assert len(seen) == 2


def test_add_and_remove_hook_and_plain_objects():
    started = threading.Event()

    class Duck:  # not a Hook subclass: any object with hook methods works
        def before_attempt(self, handle):
            started.set()

    duck = Duck()
    with Runner(workers=1) as runner:
        runner.add_hook(duck)
        runner.submit(int).result(timeout=WAIT)
        assert started.is_set()
        started.clear()
        assert runner.remove_hook(duck) is True
        assert runner.remove_hook(duck) is False
        runner.submit(int).result(timeout=WAIT)
        assert not started.is_set()


def test_bad_hooks_are_refused():
    with pytest.raises(offload.ConfigurationError, match="has none of the hook methods"):
        Runner(hooks=[object()])
    with pytest.raises(offload.ConfigurationError, match="hooks must be a list"):
        Runner(hooks="nope")  # type: ignore[arg-type]
    with pytest.raises(offload.ConfigurationError, match="unknown hook event 'after_sucess'"):
        offload.on("after_sucess")

    class NotCallable:
        before_attempt = 3

    with pytest.raises(offload.ConfigurationError, match="before_attempt is not callable"):
        Runner(hooks=[NotCallable()])
