"""pytest plugin of offload, registered through the ``pytest11`` entry point.

Fixtures:

``fake_clock``
    A fresh :class:`~offload.testing.FakeClock`.
``runner``
    A real threaded :class:`~offload.Runner` driven by ``fake_clock`` and installed
    as the default runner for the test, so ``task.delay()`` uses it. It is shut
    down after the test, which then fails if a worker thread is left running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from .._runner import Runner
from ._clock import FakeClock
from ._helpers import use_runner


@pytest.fixture
def fake_clock() -> FakeClock:
    """Time that moves only when the test calls ``advance()``."""
    return FakeClock()


@pytest.fixture
def runner(fake_clock: FakeClock) -> Iterator[Runner]:
    """A 4-worker runner on the fake clock, installed as the default runner."""
    instance = Runner(workers=4, clock=fake_clock, drain_timeout=5.0, name="offload-test")
    with use_runner(instance):
        yield instance
    instance.shutdown(wait=True, cancel_pending=True)
    leaked = [t for t in threading.enumerate() if t.name.startswith("offload-test-") and t.is_alive()]
    for thread in leaked:
        thread.join(timeout=5.0)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"offload runner fixture leaked threads: {still}"
