"""@offload.task, the default runner, configure(), get(), offload.Thread."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

import offload
from offload import ConfigurationError, State
from offload.testing import use_runner

from .conftest import WAIT


@offload.task
def add(a: int, b: int = 0) -> int:
    return a + b


@offload.task(name="tests.task.named", retries=2, timeout=5, priority=7, queue="mail")
def named(x: int) -> int:
    return x


def test_plain_call_runs_inline():
    assert add(2, b=3) == 5
    assert threading.active_count() >= 1
    assert add.name == "tests.test_task.add"
    assert add.__name__ == "add"  # wraps the function
    assert repr(add) == "<offload.Task tests.test_task.add>"


def test_options_are_recorded():
    options = named.options
    assert (options.name, options.retries, options.timeout, options.priority, options.queue) == (
        "tests.task.named",
        2,
        5.0,
        7,
        "mail",
    )
    assert add.options.retries == 0 and add.options.retry_on == (Exception,) and add.options.timeout is None


def test_delay_enqueue_apply_async_use_the_default_runner():
    assert add.delay(1, 2).result(timeout=WAIT) == 3
    assert add.enqueue(3, b=4).result(timeout=WAIT) == 7
    assert add.apply_async((5,), {"b": 6}).result(timeout=WAIT) == 11
    assert add.apply_async([5]).result(timeout=WAIT) == 5
    handle = named.delay(1)
    assert (handle.name, handle.queue, handle.priority) == ("tests.task.named", "mail", 7)
    assert named.apply_async((1,), priority=-3).priority == -3
    assert offload.get(handle.id) is handle
    assert offload.stats().submitted == 6


def test_apply_async_countdown_and_eta(runner, fake_clock):
    later = add.apply_async((1, 1), countdown=10)
    eta = datetime.fromtimestamp(fake_clock.time(), timezone.utc) + timedelta(seconds=20)
    latest = add.apply_async((2, 2), eta=eta)
    assert later.state is State.SCHEDULED and latest.state is State.SCHEDULED
    fake_clock.advance(10)
    assert later.result(timeout=WAIT) == 2
    assert latest.state is State.SCHEDULED
    fake_clock.advance(10)
    assert latest.result(timeout=WAIT) == 4


def test_runner_submit_keeps_the_task_policies(runner):
    handle = runner.submit(named, 5)
    assert handle.result(timeout=WAIT) == 5
    assert handle.priority == 7 and handle.queue == "mail"
    assert handle._options is named.options


def test_registered_tasks():
    tasks = offload.registered_tasks()
    assert tasks["tests.task.named"] is named
    assert tasks["tests.test_task.add"] is add


def test_same_function_reimported_replaces_registration():
    def fn() -> None: ...

    first = offload.task(name="tests.task.reimport")(fn)
    second = offload.task(name="tests.task.reimport")(fn)
    assert offload.registered_tasks()["tests.task.reimport"] is second is not first


def test_configure_before_first_use():
    offload.configure(workers=3, history=50)
    offload.configure(drain_timeout=2.0)  # merges
    runner = offload.default_runner()
    assert runner.settings.workers == 3
    assert runner.settings.history == 50
    assert runner.settings.drain_timeout == 2.0
    offload.configure(workers=3)  # same value after start: fine
    with pytest.raises(ConfigurationError, match=r"already started with workers=3 \(asked 4\)"):
        offload.configure(workers=4)


def test_shutdown_then_new_default_runner():
    first = offload.default_runner()
    assert offload.submit(int, 1).result(timeout=WAIT) == 1
    offload.shutdown()
    assert first.closed
    assert offload.submit(int, 2).result(timeout=WAIT) == 2
    assert offload.default_runner() is not first


def test_get_without_default_runner():
    offload.shutdown()  # nothing to shut down: fine
    assert offload.get("0" * 32) is None


def test_thread_drop_in():
    results: list[int] = []
    thread = offload.Thread(target=results.append, args=(42,))
    assert not thread.is_alive()
    handle = thread.start()
    assert thread.handle is handle
    thread.join(WAIT)
    assert not thread.is_alive()
    assert results == [42]
    assert handle.state is State.SUCCEEDED
    assert handle.name == "builtins.list.append" or handle.name.endswith("append")


def test_thread_failure_is_recorded_not_lost(caplog):
    def fails() -> None:
        raise RuntimeError("lost in a thread no more")

    thread = offload.Thread(target=fails, name="mail-sender")
    thread.start()
    thread.join(WAIT)
    assert thread.handle is not None
    assert thread.handle.state is State.FAILED
    assert thread.handle.name == "mail-sender"
    assert any("lost in a thread no more" in r.getMessage() for r in caplog.records)


def test_thread_subclass_overriding_run():
    done = threading.Event()

    class Worker(offload.Thread):
        def run(self) -> None:
            done.set()

    worker = Worker()
    worker.start()
    worker.join(WAIT)
    assert done.is_set()
    assert worker.handle is not None and worker.handle.name.endswith("Worker")


def test_thread_kwargs_and_daemon_accepted():
    got: dict[str, int] = {}
    thread = offload.Thread(target=got.update, kwargs={"a": 1}, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert got == {"a": 1}


def test_use_runner_routes_delay(runner):
    other = offload.Runner(workers=1)
    try:
        with use_runner(other):
            handle = add.delay(1)
            assert handle._runner is other
        assert add.delay(1)._runner is runner
    finally:
        other.shutdown()
