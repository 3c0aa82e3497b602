"""Enqueue deferral: hold a new task until something outside offload says go.

The Django integration installs one so that a task enqueued inside
``transaction.atomic()`` is queued when the transaction commits and never runs
if it rolls back. The runner asks the installed deferral about every new task:

    deferral(handle, admit, discard) -> bool

It returns False to let the task be queued now, or True after arranging to call
``admit()`` (queue it now) or ``discard(reason)`` (cancel it, logged and
counted) later; meanwhile the task is ``State.PENDING``. ``admit`` and
``discard`` never raise and do nothing once the task left ``PENDING``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from ._errors import EnqueueError
from ._handle import State
from ._log import runner_log

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._runner import Runner


class Deferral(Protocol):
    def __call__(self, handle: TaskHandle, admit: Callable[[], None], discard: Callable[[str], None]) -> bool: ...


current: Deferral | None = None


def install(deferral: Deferral | None) -> Deferral | None:
    """Install ``deferral`` for every runner of the process (None removes it); return the previous one."""
    global current
    previous, current = current, deferral
    return previous


# -- the runner's side -------------------------------------------------------------


def defer(runner: Runner, deferral: Deferral, handle: TaskHandle, delay: float) -> bool:
    """Offer a new task to the installed deferral; True if it is now PENDING."""
    if runner._state is not runner._RUNNING:  # unlocked look first: this runs for every enqueue
        runner._check_open(handle)  # refuse at once what could never be queued
    if not deferral(handle, partial(_admit_pending, runner, handle, delay), partial(_discard_pending, runner, handle)):
        return False
    with runner._lock:
        handle.state = State.PENDING
        runner._n_pending += 1
        runner._active[handle.id] = handle
    return True


def _admit_pending(runner: Runner, handle: TaskHandle, delay: float) -> None:
    if handle.state is not State.PENDING:
        return  # cancelled meanwhile
    try:
        runner._admit(handle, delay)
    except EnqueueError as exc:  # full or closed by the time it was let go
        if runner._cancel(handle, f"not queued: {exc}"):
            runner_log.error("task %s (id %s) was pending and could not be queued: %s", handle.name, handle.id, exc)
    else:
        if _cancelled(handle):  # a unique twin was queued first
            handle._settle()
            runner_log.info("task %s (id %s) discarded: %s", handle.name, handle.id, handle.cancel_reason)


def _cancelled(handle: TaskHandle) -> bool:
    return handle.state is State.CANCELLED  # read again: another call changed it


def _discard_pending(runner: Runner, handle: TaskHandle, reason: str) -> None:
    if handle.state is State.PENDING and runner._cancel(handle, reason):
        runner_log.info("task %s (id %s) discarded: %s", handle.name, handle.id, reason)
