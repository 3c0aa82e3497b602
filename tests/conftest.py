"""Shared fixtures: every test fails if it leaks a thread or an exception
reaches ``threading.excepthook``; the default runner is reset between tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

import offload
from offload import _default, _hooks

# Waits in tests are bounded by this many real seconds; generous for slow CI,
# never reached when the code is right.
WAIT = 10.0


@pytest.fixture(autouse=True)
def _no_thread_leaks_or_unhandled_exceptions() -> Iterator[None]:
    before = set(threading.enumerate())
    unhandled: list[threading.ExceptHookArgs] = []
    previous_hook = threading.excepthook
    threading.excepthook = unhandled.append
    try:
        yield
        _reset_default_runner()
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        for thread in leaked:
            thread.join(timeout=WAIT)
        still = [t.name for t in leaked if t.is_alive()]
        assert not still, f"test leaked threads: {still}"
        assert not unhandled, f"exceptions reached threading.excepthook: {[u.exc_value for u in unhandled]}"
    finally:
        threading.excepthook = previous_hook


def _reset_default_runner() -> None:
    runner = _default.install(None)
    if runner is not None:
        runner.shutdown(wait=True, cancel_pending=True, timeout=WAIT)
    _default._settings = offload.RunnerSettings()
    with _hooks._global_lock:
        _hooks._global.clear()
    _hooks._rebuild_all()


@pytest.fixture
def in_ci() -> bool:
    """True under CI=true, where a test may not skip for a missing service."""
    return os.environ.get("CI", "").lower() == "true"
