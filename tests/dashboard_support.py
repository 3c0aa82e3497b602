"""A real HTTP client and a populated runner for the dashboard tests."""

from __future__ import annotations

import http.client
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import offload
from offload import Runner, TaskHandle
from offload.dashboard import serve
from offload.testing import FakeClock

from .conftest import WAIT

TOKEN = "test-token-0123456789abcdef"
XSS = "<script>alert('xss')</script>"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """``http.client`` against the server: no redirects followed, any header settable."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.default_host = f"{self.host}:{self.port}"

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | str | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=WAIT)
        try:
            all_headers = {"Host": self.default_host, **(headers or {})}
            if isinstance(body, str):
                body = body.encode()
                all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)


@contextmanager
def running_dashboard(runner: Runner, **options: Any) -> Iterator[Client]:
    server = serve(runner, port=0, background=True, **options)
    try:
        yield Client(server.url)
    finally:
        server.stop()


class RetryWatch(offload.Hook):
    def __init__(self) -> None:
        self.scheduled: queue.Queue[str] = queue.Queue()

    def after_retry_scheduled(self, handle: TaskHandle, exc: BaseException, delay: float) -> None:
        self.scheduled.put(handle.id)


@offload.task(name="tests.dashboard.boom")
def boom(value: object, **kwargs: object) -> None:
    raise ValueError(f"boom with {value}")


@offload.task(name="tests.dashboard.flaky", retries=1, backoff=1.0, jitter=False)
def flaky(calls: list[int]) -> str:
    calls.append(1)
    if len(calls) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@offload.task(name="tests.dashboard.add")
def add(a: int, b: int) -> int:
    return a + b


@dataclass
class Scenario:
    """A runner with one task in each interesting state."""

    runner: Runner
    clock: FakeClock
    failed: TaskHandle
    retried: TaskHandle
    succeeded: TaskHandle
    running: TaskHandle
    scheduled: TaskHandle
    release: threading.Event
    handles: list[TaskHandle] = field(default_factory=list)


def blocker(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(WAIT)


def populate(runner: Runner, clock: FakeClock) -> Scenario:
    watch = RetryWatch()
    runner.add_hook(watch)
    failed = runner.submit(boom, XSS, password="hunter2", token="t0ps3cret", nested={"api_key": "k3y", "x": 1})
    assert failed.wait(WAIT)
    retried = runner.submit(flaky, [])
    assert watch.scheduled.get(timeout=WAIT) == retried.id
    clock.advance(1.0)
    assert retried.wait(WAIT)
    succeeded = runner.submit(add, 1, 2)
    assert succeeded.wait(WAIT)
    started, release = threading.Event(), threading.Event()
    running = runner.submit(blocker, started, release)
    assert started.wait(WAIT)
    scheduled = runner._enqueue(add, (3, 4), {}, countdown=3600)
    runner.remove_hook(watch)
    return Scenario(runner, clock, failed, retried, succeeded, running, scheduled, release)
