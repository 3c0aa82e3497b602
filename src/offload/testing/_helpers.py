"""Context managers that swap the default runner for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .. import _default
from .._runner import Runner


@contextmanager
def use_runner(runner: Runner) -> Iterator[Runner]:
    """Make ``runner`` the default runner inside the block, then restore the previous one.

    ``Task.delay()``, ``offload.submit()`` and ``offload.Thread`` use it meanwhile.
    The runner is not shut down on exit; that stays the caller's job.
    """
    previous = _default.install(runner)
    try:
        yield runner
    finally:
        _default.install(previous)


@contextmanager
def eager() -> Iterator[Runner]:
    """Run every task inline in the caller, retries included, inside the block.

    Backoff delays are computed (and visible to hooks) but not slept, and
    timeouts are not enforced; ``countdown``/``eta`` run at once. Exceptions do
    not propagate from ``delay()``: read them from the handle, as in production.
    """
    runner = Runner(eager=True, name="offload-eager")
    with use_runner(runner):
        try:
            yield runner
        finally:
            runner.shutdown()
