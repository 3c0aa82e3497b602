"""Waiting on many handles: ``offload.wait`` and ``offload.as_completed``, mirroring
:mod:`concurrent.futures` (same names, same ``return_when`` constants, same
``TimeoutError``), for handles of any runner.

Both register one done callback per unfinished handle and remove it again when
they return, so calling ``wait(..., timeout=1)`` in a loop does not pile
callbacks up on long-running tasks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import NamedTuple

from ._handle import State, TaskHandle, _check_timeout

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "DoneAndNotDone", "as_completed", "wait"]

_RETURN_WHEN = (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED)


class DoneAndNotDone(NamedTuple):
    """What :func:`wait` returns: the handles done, and those not done, as sets."""

    done: set[TaskHandle]
    not_done: set[TaskHandle]


class _Collector:
    """Done callback shared by every handle being waited on."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.finished: list[TaskHandle] = []

    def __call__(self, handle: TaskHandle) -> None:
        with self.cond:
            self.finished.append(handle)
            self.cond.notify_all()


def _check_handles(handles: Iterable[TaskHandle], what: str) -> list[TaskHandle]:
    if isinstance(handles, TaskHandle) or not isinstance(handles, Iterable):
        raise TypeError(f"{what}() takes an iterable of TaskHandle objects, got {handles!r}")
    listed = list(dict.fromkeys(handles))  # unique, in order
    for handle in listed:
        if not isinstance(handle, TaskHandle):
            raise TypeError(f"{what}() takes TaskHandle objects, got {handle!r}")
    return listed


def _failed(handle: TaskHandle) -> bool:
    return handle.state is State.FAILED


def _subscribe(handles: list[TaskHandle], collector: _Collector) -> None:
    for handle in handles:
        handle.add_done_callback(collector)  # called at once if already done


def _unsubscribe(handles: list[TaskHandle], collector: _Collector) -> None:
    for handle in handles:
        with handle._lock:
            callbacks = handle._callbacks
            if callbacks:
                try:
                    callbacks.remove(collector)
                except ValueError:
                    pass


def wait(
    handles: Iterable[TaskHandle], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> DoneAndNotDone:
    """Wait until some or all of ``handles`` are done, like :func:`concurrent.futures.wait`.

    Args:
        handles: task handles, of any runners; duplicates count once.
        timeout: most seconds to wait; ``None`` for no limit. When it passes the
            call returns (it does not raise).
        return_when: ``offload.FIRST_COMPLETED``, ``offload.FIRST_EXCEPTION`` (the
            first that FAILED, or all done) or ``offload.ALL_COMPLETED``.

    Returns:
        ``(done, not_done)``, two sets. A cancelled or expired task counts as done.
    """
    _check_timeout(timeout, "wait")
    if return_when not in _RETURN_WHEN:
        raise ValueError(f"wait(): return_when must be one of {', '.join(_RETURN_WHEN)}, got {return_when!r}")
    listed = _check_handles(handles, "wait")
    collector = _Collector()
    _subscribe(listed, collector)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with collector.cond:
            while True:
                finished = collector.finished
                if len(finished) == len(listed):
                    break
                if return_when == FIRST_COMPLETED and finished:
                    break
                if return_when == FIRST_EXCEPTION and any(map(_failed, finished)):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                collector.cond.wait(remaining)
            done = set(collector.finished)
    finally:
        _unsubscribe(listed, collector)
    return DoneAndNotDone(done, set(listed) - done)


def as_completed(handles: Iterable[TaskHandle], timeout: float | None = None) -> Iterator[TaskHandle]:
    """Yield ``handles`` as they finish (those already done first), like
    :func:`concurrent.futures.as_completed`.

    Raises:
        TimeoutError: ``timeout`` seconds (counted from the call) passed before all
            were done; the message says how many were not.
    """
    _check_timeout(timeout, "as_completed")
    listed = _check_handles(handles, "as_completed")
    return _as_completed(listed, timeout)


def _as_completed(listed: list[TaskHandle], timeout: float | None) -> Iterator[TaskHandle]:
    deadline = None if timeout is None else time.monotonic() + timeout
    collector = _Collector()
    _subscribe(listed, collector)
    yielded = 0
    try:
        while yielded < len(listed):
            with collector.cond:
                while len(collector.finished) == yielded:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"{len(listed) - yielded} (of {len(listed)}) tasks unfinished")
                    collector.cond.wait(remaining)
                batch = collector.finished[yielded:]
            for handle in batch:
                yielded += 1
                yield handle
    finally:
        _unsubscribe(listed, collector)
