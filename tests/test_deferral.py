"""Enqueue deferral (the seam the Django integration's on-commit enqueue uses) and
the ``on_thread_exit`` hook (where it closes a worker thread's connections).

The deferral here is a plain recorder standing in for a database transaction:
``commit()`` calls every ``admit``, ``rollback()`` every ``discard``; the real
one is exercised against PostgreSQL in ``tests/django``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

import offload
from offload import RunnerClosedError, State, TaskCancelledError, _deferral
from offload.testing import FakeClock, use_runner

from .conftest import WAIT


class Transaction:
    """Defers every task while open; commit() admits them, rollback() discards them."""

    def __init__(self) -> None:
        self.open = True
        self.admits: list[Callable[[], None]] = []
        self.discards: list[Callable[[str], None]] = []

    def __call__(self, handle: offload.TaskHandle, admit: Callable[[], None], discard: Callable[[str], None]) -> bool:
        if not self.open:
            return False
        self.admits.append(admit)
        self.discards.append(discard)
        return True

    def commit(self) -> None:
        self.open = False
        for admit in self.admits:
            admit()

    def rollback(self) -> None:
        self.open = False
        for discard in self.discards:
            discard("its transaction rolled back")


@pytest.fixture
def transaction() -> Iterator[Transaction]:
    tx = Transaction()
    previous = _deferral.install(tx)
    yield tx
    _deferral.install(previous)


@pytest.fixture
def runner(fake_clock: FakeClock) -> Iterator[offload.Runner]:
    instance = offload.Runner(workers=2, clock=fake_clock, queue_size=2)
    yield instance
    instance.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def test_a_deferred_task_is_pending_until_commit_then_runs(runner, transaction):
    handle = runner.submit(int, "7")
    assert handle.state is State.PENDING
    assert not handle.done()
    assert runner.get(handle.id) is handle
    stats = runner.stats()
    assert (stats.pending, stats.queued, stats.submitted) == (1, 0, 0)
    assert stats.counts[State.PENDING] == 1
    transaction.commit()
    assert handle.result(timeout=WAIT) == 7
    assert runner.join(timeout=WAIT)
    stats = runner.stats()
    assert (stats.pending, stats.submitted, stats.succeeded) == (0, 1, 1)


def test_rollback_cancels_logs_and_counts(runner, transaction, caplog):
    ran = threading.Event()
    handle = runner.submit(ran.set)
    with caplog.at_level(logging.INFO, logger="offload"):
        transaction.rollback()
    assert handle.state is State.CANCELLED
    assert handle.cancel_reason == "its transaction rolled back"
    with pytest.raises(TaskCancelledError):
        handle.result(timeout=WAIT)
    assert runner.stats().cancelled == 1 and runner.stats().pending == 0
    assert f"(id {handle.id}) discarded: its transaction rolled back" in caplog.text
    assert not ran.is_set()


def test_a_pending_task_can_be_cancelled_and_commit_then_does_nothing(runner, transaction):
    ran = threading.Event()
    handle = runner.submit(ran.set)
    assert handle.cancel() is True
    transaction.commit()
    assert handle.state is State.CANCELLED and handle.cancel_reason == "cancelled"
    assert runner.join(timeout=WAIT)
    assert not ran.is_set()
    assert runner.stats().submitted == 0


def test_commit_after_shutdown_cancels_with_an_error_logged(runner, transaction, caplog):
    handle = runner.submit(int, "1")
    runner.shutdown(wait=True)
    with caplog.at_level(logging.ERROR, logger="offload"):
        transaction.commit()  # never raises into the committing code
    assert handle.state is State.CANCELLED
    assert handle.cancel_reason is not None and handle.cancel_reason.startswith("not queued: ")
    assert "was pending and could not be queued" in caplog.text and handle.id in caplog.text


def test_commit_into_a_full_queue_cancels_with_an_error_logged(fake_clock, transaction, caplog):
    runner = offload.Runner(workers=1, queue_size=1, clock=fake_clock)
    try:
        handles = [runner.submit(int, str(i)) for i in range(3)]  # pending: no room needed yet
        gate = threading.Event()
        transaction.open = False
        blocker = runner.submit(gate.wait, WAIT)  # takes the worker
        with caplog.at_level(logging.ERROR, logger="offload"):
            transaction.commit()
        states = [h.state for h in handles]
        assert states.count(State.CANCELLED) >= 1, states
        cancelled = [h for h in handles if h.state is State.CANCELLED]
        assert all("queue is full" in (h.cancel_reason or "") for h in cancelled)
        assert all(h.id in caplog.text for h in cancelled)
        gate.set()
        assert blocker.result(timeout=WAIT) is True
        assert runner.join(timeout=WAIT)
        assert all(h.state in (State.SUCCEEDED, State.CANCELLED) for h in handles)
    finally:
        runner.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def test_a_countdown_starts_at_commit(runner, transaction, fake_clock):
    later = offload.task(name="tests.later")(int)
    with use_runner(runner):
        handle = later.apply_async(args=("5",), countdown=30)
    assert handle.state is State.PENDING
    fake_clock.advance(60)  # time passing before the commit does not count
    transaction.commit()
    assert handle.state is State.SCHEDULED
    fake_clock.advance(30)
    assert handle.result(timeout=WAIT) == 5


def test_an_eager_runner_runs_the_task_at_commit(transaction):
    runner = offload.Runner(eager=True)
    handle = runner.submit(int, "3")
    assert handle.state is State.PENDING
    transaction.commit()
    assert handle.state is State.SUCCEEDED and handle.result(timeout=0) == 3
    assert runner.stats().pending == 0
    runner.shutdown()


def test_a_closed_runner_refuses_before_the_deferral_is_asked(runner, transaction):
    runner.shutdown(wait=True)
    with pytest.raises(RunnerClosedError):
        runner.submit(int, "1")
    assert transaction.admits == []


def test_no_deferral_when_it_declines(runner, transaction):
    transaction.open = False
    handle = runner.submit(int, "9")
    assert handle.result(timeout=WAIT) == 9


# -- on_thread_exit ------------------------------------------------------


def test_on_thread_exit_runs_in_each_worker_thread_as_it_exits():
    exited: list[str] = []
    lock = threading.Lock()

    class Record(offload.Hook):
        def on_thread_exit(self, runner: offload.Runner) -> None:
            with lock:
                exited.append(threading.current_thread().name)

    runner = offload.Runner(workers=2, hooks=[Record()], name="exits")
    gate = threading.Event()
    started = [threading.Event(), threading.Event()]
    handles = [runner.submit(lambda e=e: (e.set(), gate.wait(WAIT))) for e in started]
    assert all(e.wait(WAIT) for e in started)
    gate.set()
    assert all(h.wait(WAIT) for h in handles)
    runner.shutdown(wait=True)
    assert sorted(exited) == ["exits-worker", "exits-worker"]


def test_on_thread_exit_runs_when_an_idle_thread_retires():
    exited = threading.Event()
    runner = offload.Runner(workers=1, idle_timeout=0.01, hooks=[])
    runner.add_hook(type("H", (), {"on_thread_exit": lambda self, r: exited.set()})())
    assert runner.submit(int, "1").result(timeout=WAIT) == 1
    assert exited.wait(WAIT)  # retired after idle_timeout, without a shutdown
    assert runner.stats().threads == 0
    runner.shutdown()


def test_unique_twins_pending_in_one_transaction_queue_once(runner, transaction, caplog):
    gate = threading.Event()
    send = offload.task(name="tests.unique_mail", unique=True)(gate.wait)
    first = runner.submit(send, WAIT)
    second = runner.submit(send, WAIT)  # neither is queued yet: both wait for the commit
    assert (first.state, second.state) == (State.PENDING, State.PENDING)
    with caplog.at_level(logging.INFO, logger="offload"):
        transaction.commit()
    assert second.state is State.CANCELLED
    assert second.cancel_reason == f"not queued: task {first.id} has the same unique key"
    assert f"(id {second.id}) discarded" in caplog.text
    assert runner.stats().pending == 0
    gate.set()
    assert first.result(timeout=WAIT) is True
