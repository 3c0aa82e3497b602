"""One log line per attempt outcome on ``offload.task``, with structured ``extra`` fields."""

from __future__ import annotations

import json
import logging

import pytest

import offload
from offload.testing import eager

FIELDS = ("task_name", "task_id", "task_queue", "attempt", "duration", "outcome", "error_type", "retry_delay")


@offload.task(name="tests.logs.flaky", retries=1, backoff=0.5, jitter=False, queue="mail")
def flaky(calls: list[int]) -> str:
    calls.append(1)
    if len(calls) == 1:
        raise ConnectionError("try again")
    return "sent"


@offload.task(name="tests.logs.broken")
def broken() -> None:
    raise ValueError("bad input")


def outcomes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "offload.task"]


def test_each_attempt_outcome_is_one_line_with_extra_fields(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="offload")
    with eager():
        handle = flaky.delay([])
    retry, success = outcomes(caplog)
    assert (retry.levelno, retry.outcome, retry.attempt, retry.retry_delay) == (logging.WARNING, "retrying", 1, 0.5)  # type: ignore[attr-defined]
    assert retry.error_type == "builtins.ConnectionError"  # type: ignore[attr-defined]
    assert retry.exc_info is not None  # the traceback of the failed attempt
    assert (success.levelno, success.outcome, success.attempt, success.error_type) == (
        logging.DEBUG,
        "succeeded",
        2,
        None,
    )  # type: ignore[attr-defined]
    for record in (retry, success):
        assert {f: getattr(record, f) for f in ("task_name", "task_id", "task_queue")} == {
            "task_name": "tests.logs.flaky",
            "task_id": handle.id,
            "task_queue": "mail",
        }
        assert record.duration >= 0  # type: ignore[attr-defined]
        json.dumps({f: getattr(record, f) for f in FIELDS})  # what a JSON formatter would emit


def test_a_failure_is_one_error_line_with_its_traceback(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="offload")
    with eager():
        handle = broken.delay()
    [record] = outcomes(caplog)
    assert record.levelno == logging.ERROR
    assert (record.outcome, record.error_type, record.task_id) == ("failed", "builtins.ValueError", handle.id)  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert record.getMessage() == f"task tests.logs.broken (id {handle.id}) failed on attempt 1: ValueError: bad input"


def test_success_is_silent_above_debug(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="offload")
    with eager():
        flaky.delay([1])  # succeeds at once
    assert outcomes(caplog) == []
