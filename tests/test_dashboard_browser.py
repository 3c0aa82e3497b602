"""End to end in headless Chromium: the overview refreshes its counts in place.

Needs the Debian ``chromium`` package (``apt-get install -y chromium``). Skipped
locally without it; under ``CI=true`` a missing browser fails the test. With
``OFFLOAD_UPDATE_SCREENSHOT=1`` it also refreshes ``docs/img/dashboard-overview.png``
(the README's picture); otherwise the screenshot goes to a temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offload import Runner
from offload.dashboard import create_app, serve

from .conftest import WAIT
from .dashboard_support import XSS, blocker, boom, flaky

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "dashboard-overview.png"
BROWSER_TIMEOUT = 90.0


def find_chromium(in_ci: bool) -> str:
    for name in (os.environ.get("OFFLOAD_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    message = "headless Chromium not found (apt-get install -y chromium, or set OFFLOAD_CHROMIUM)"
    if in_ci:
        pytest.fail(message)
    pytest.skip(message)


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )


class Gate:
    """Wraps the app: notes when the first full page was served, holds refreshes until released."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.first_page = threading.Event()
        self.open = threading.Event()
        self.first_html = b""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        refresh = environ.get("HTTP_X_REQUESTED_WITH") == "offload-refresh"
        if refresh:
            assert self.open.wait(WAIT)
        body = list(self.app(environ, start_response))
        if environ.get("PATH_INFO") == "/" and not refresh and not self.first_page.is_set():
            self.first_html = b"".join(body)
            self.first_page.set()
        return body


@pytest.fixture
def chromium(in_ci: bool) -> str:
    return find_chromium(in_ci)


@pytest.fixture
def busy_runner() -> Iterator[tuple[Runner, threading.Event]]:
    runner = Runner(workers=3, name="offload-browser")
    release = threading.Event()
    yield runner, release
    release.set()
    runner.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def count(html: str, state: str) -> int:
    match = re.search(rf'data-field="counts\.{state}">(\d+)<', html)
    assert match is not None, state
    return int(match[1])


def test_overview_counts_update_without_reload(chromium: str, busy_runner: tuple[Runner, threading.Event]):
    runner, release = busy_runner
    assert runner.submit(boom, XSS, password="hunter2").wait(WAIT)
    started = threading.Event()
    runner.submit(blocker, started, release)
    assert started.wait(WAIT)
    gate = Gate(create_app(runner=runner))

    def more_work_after_the_first_load() -> None:
        if gate.first_page.wait(WAIT):
            handles = [runner.submit(int, i) for i in range(7)]
            for handle in handles:
                handle.wait(WAIT)
        gate.open.set()

    worker = threading.Thread(target=more_work_after_the_first_load)
    worker.start()
    with serve(app=gate, port=0, background=True) as server:
        result = headless(chromium, "--virtual-time-budget=8000", "--dump-dom", server.url)
    worker.join(WAIT)
    assert result.returncode == 0, result.stderr[-2000:]
    first = gate.first_html.decode()
    assert (count(first, "succeeded"), count(first, "failed"), count(first, "running")) == (0, 1, 1)
    dom = result.stdout
    assert re.search(r'<body[^>]* data-refreshed="\d+"', dom), "the script did not refresh <main>"
    assert (count(dom, "succeeded"), count(dom, "failed"), count(dom, "running")) == (7, 1, 1)
    assert "<script>alert" not in dom


def test_screenshot_of_the_overview(chromium: str, busy_runner: tuple[Runner, threading.Event], tmp_path: Path):
    runner, release = busy_runner
    handles = [runner.submit(flaky, []) for _ in range(3)]  # each fails once, retried after ~1 s
    handles += [runner.submit(boom, i) for i in range(2)]
    handles += [runner.submit(int, i) for i in range(25)]
    started = threading.Event()
    runner.submit(blocker, started, release)
    assert started.wait(WAIT)
    assert all(h.wait(WAIT) for h in handles)
    shot = tmp_path / "overview.png"
    with serve(runner, port=0, background=True) as server:
        result = headless(
            chromium, "--window-size=1280,760", "--virtual-time-budget=3000", f"--screenshot={shot}", server.url
        )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    if os.environ.get("OFFLOAD_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
