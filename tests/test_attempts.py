"""Per-attempt records on handles, and what a finished handle keeps."""

from __future__ import annotations

import queue
import threading

import offload
from offload import Attempt, Runner, State
from offload._handle import MAX_ATTEMPT_RECORDS
from offload.testing import FakeClock, eager

from .conftest import WAIT


class Retries(offload.Hook):
    def __init__(self) -> None:
        self.scheduled: queue.Queue[int] = queue.Queue()

    def after_retry_scheduled(self, handle: offload.TaskHandle, exc: BaseException, delay: float) -> None:
        self.scheduled.put(handle.attempts)


def test_a_plain_success_records_one_attempt(runner: Runner, fake_clock: FakeClock):
    handle = runner.submit(sum, [1, 2])
    assert handle.result(timeout=WAIT) == 3
    [attempt] = handle.attempt_records
    assert isinstance(attempt, Attempt)
    assert (attempt.number, attempt.outcome, attempt.error) == (1, "succeeded", None)
    assert attempt.finished_at == handle.finished_at
    assert attempt.duration >= 0.0
    assert attempt.started_at == attempt.finished_at - attempt.duration


def test_retries_and_the_final_failure_are_each_recorded():
    clock = FakeClock()
    hook = Retries()
    runner = Runner(workers=1, clock=clock, hooks=[hook])
    try:

        @offload.task(name="tests.attempts.always", retries=2, backoff=1.0, jitter=False)
        def always(n: int) -> None:
            raise KeyError(n)

        handle = runner.submit(always, 7)
        for expected in (1, 2):
            assert hook.scheduled.get(timeout=WAIT) == expected
            clock.advance(60)
        assert handle.wait(WAIT)
        outcomes = [(a.number, a.outcome, a.error.type if a.error else None) for a in handle.attempt_records]
        assert outcomes == [
            (1, "retrying", "builtins.KeyError"),
            (2, "retrying", "builtins.KeyError"),
            (3, "failed", "builtins.KeyError"),
        ]
        assert handle.attempt_records[-1].error == handle.error
        assert "raise KeyError(n)" in handle.attempt_records[0].error.traceback  # type: ignore[union-attr]
    finally:
        runner.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def test_records_are_bounded_and_keep_the_first():
    retries = MAX_ATTEMPT_RECORDS + 5
    with eager():

        @offload.task(name="tests.attempts.many", retries=retries, backoff=0.0, max_backoff=0.0)
        def many() -> None:
            raise ValueError("again")

        handle = many.delay()
    assert handle.state is State.FAILED
    assert handle.attempts == retries + 1
    records = handle.attempt_records
    assert len(records) == MAX_ATTEMPT_RECORDS
    assert records[0].number == 1
    assert [r.number for r in records[1:]] == list(range(retries + 2 - (MAX_ATTEMPT_RECORDS - 1), retries + 2))


def test_a_failed_task_keeps_its_arguments_others_let_go(runner: Runner):
    def fails(secret: str) -> None:
        raise RuntimeError("no")

    failed = runner.submit(fails, "kept")
    ok = runner.submit(str, "dropped")
    assert failed.wait(WAIT) and ok.wait(WAIT)
    assert failed._args == ("kept",) and failed._fn is fails
    assert failed._ctx is None
    assert ok._args is None and ok._fn is None


def test_a_cancelled_task_has_no_attempts_and_no_arguments(runner: Runner):
    release = threading.Event()
    started = threading.Event()
    blockers = [runner.submit(lambda: (started.set(), release.wait(WAIT))) for _ in range(4)]
    assert started.wait(WAIT)
    waiting = runner._enqueue(str, ("x",), {}, countdown=100)
    assert waiting.cancel()
    release.set()
    assert all(b.wait(WAIT) for b in blockers)
    assert waiting.attempt_records == ()
    assert waiting._args is None
