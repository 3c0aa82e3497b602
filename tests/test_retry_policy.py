"""Failure-aware retries: retry_after, HTTP 429/503 Retry-After from requests and
httpx, retry_deadline and dont_retry_on. Stepped with the fake clock."""

from __future__ import annotations

import email.message
import queue
import urllib.error
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest
import requests

import offload
from offload import Runner, State
from offload._policy import parse_retry_after, requested_delay
from offload.testing import FakeClock

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
def runner(fake_clock: FakeClock, watch: RetryWatch):
    r = Runner(workers=2, clock=fake_clock, hooks=[watch])
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


class ThrottledError(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__(f"throttled, retry after {retry_after}")
        self.retry_after = retry_after


def failing_then_ok(*errors: BaseException):
    remaining = list(errors)

    def fn() -> str:
        if remaining:
            raise remaining.pop(0)
        return "ok"

    return fn


def requests_error(status: int, retry_after: str | None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"{status} error", response=response)


def httpx_error(status: int, retry_after: str | None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.example.com/things")
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"{status} error", request=request, response=response)


def urllib_error(status: int, retry_after: str | None) -> urllib.error.HTTPError:
    headers = email.message.Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return urllib.error.HTTPError("https://api.example.com/things", status, f"{status} error", headers, None)


def test_retry_after_attribute_sets_the_delay(runner, fake_clock, watch):
    task = offload.task(name="tests.policy.attr", retries=2, backoff=1.0, jitter=False)(
        failing_then_ok(ThrottledError(30))
    )
    handle = runner.submit(task)
    assert watch.scheduled.get(timeout=WAIT) == 30.0
    fake_clock.advance(29.9)
    assert not handle.wait(0.05)
    fake_clock.advance(0.1)
    assert handle.result(timeout=WAIT) == "ok"


def test_retry_after_is_capped_by_max_backoff(runner, fake_clock, watch):
    task = offload.task(name="tests.policy.cap", retries=1, backoff=1.0, max_backoff=60.0)(
        failing_then_ok(ThrottledError(3600))
    )
    handle = runner.submit(task)
    assert watch.scheduled.get(timeout=WAIT) == 60.0
    fake_clock.advance(60.0)
    assert handle.result(timeout=WAIT) == "ok"


@pytest.mark.parametrize("make_error", [requests_error, httpx_error, urllib_error], ids=["requests", "httpx", "urllib"])
@pytest.mark.parametrize("status", [429, 503])
def test_http_retry_after_seconds(runner, fake_clock, watch, make_error, status):
    task = offload.task(name=f"tests.policy.http.{make_error.__name__}.{status}", retries=1, jitter=False)(
        failing_then_ok(make_error(status, "12"))
    )
    handle = runner.submit(task)
    assert watch.scheduled.get(timeout=WAIT) == 12.0
    fake_clock.advance(12.0)
    assert handle.result(timeout=WAIT) == "ok"


@pytest.mark.parametrize("make_error", [requests_error, httpx_error, urllib_error], ids=["requests", "httpx", "urllib"])
def test_http_retry_after_date(make_error):
    now = 1_767_225_600.0
    when = format_datetime(datetime.fromtimestamp(now + 90, timezone.utc), usegmt=True)
    assert requested_delay(make_error(429, when), now) == 90.0


@pytest.mark.parametrize("make_error", [requests_error, httpx_error, urllib_error], ids=["requests", "httpx", "urllib"])
def test_other_statuses_and_missing_headers_use_the_backoff(make_error):
    assert requested_delay(make_error(500, "12"), 0.0) is None
    assert requested_delay(make_error(429, None), 0.0) is None
    assert requested_delay(make_error(503, "soon"), 0.0) is None


def test_unusable_retry_after_values_are_ignored():
    assert requested_delay(ThrottledError(-1), 0.0) is None
    assert requested_delay(ThrottledError(float("nan")), 0.0) is None
    assert requested_delay(ThrottledError("10"), 0.0) is None
    assert requested_delay(ThrottledError(True), 0.0) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00", 0.0) is None  # no zone
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 2e9) == 0.0  # in the past: now


def test_dont_retry_on_fails_at_once(runner, watch):
    class PermanentError(ConnectionError):
        pass

    task = offload.task(name="tests.policy.permanent", retries=5, dont_retry_on=PermanentError)(
        failing_then_ok(PermanentError("gone for good"))
    )
    handle = runner.submit(task)
    with pytest.raises(PermanentError):
        handle.result(timeout=WAIT)
    assert handle.attempts == 1
    assert watch.scheduled.empty()


def test_retry_deadline_stops_retrying_before_the_count(runner, fake_clock, watch):
    errors = [ConnectionError(f"down {i}") for i in range(10)]
    task = offload.task(
        name="tests.policy.deadline", retries=10, backoff=4.0, max_backoff=4.0, jitter=False, retry_deadline=10.0
    )(failing_then_ok(*errors))
    handle = runner.submit(task)
    assert watch.scheduled.get(timeout=WAIT) == 4.0  # next attempt at 4s
    fake_clock.advance(4.0)
    assert watch.scheduled.get(timeout=WAIT) == 4.0  # at 8s
    fake_clock.advance(4.0)
    # the next would start at 12s > 10s after the first attempt started: fail now
    with pytest.raises(ConnectionError, match="down 2"):
        handle.result(timeout=WAIT)
    assert handle.attempts == 3
    assert handle.state is State.FAILED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_deadline": 0}, "retry_deadline must be a finite number of seconds > 0"),
        ({"retry_deadline": -5}, "retry_deadline must be a finite number of seconds > 0"),
        ({"retry_deadline": "1h"}, "retry_deadline must be a number of seconds"),
        ({"dont_retry_on": "ValueError"}, "dont_retry_on must be an exception class"),
        ({"dont_retry_on": (ValueError, 3)}, "dont_retry_on must be an exception class"),
    ],
)
def test_bad_retry_policy_options(options, message):
    with pytest.raises(offload.ConfigurationError, match=r"task 'tests.policy.bad': " + message):
        offload.task(name="tests.policy.bad", **options)(lambda: None)
