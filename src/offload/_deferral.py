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
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._handle import TaskHandle


class Deferral(Protocol):
    def __call__(self, handle: TaskHandle, admit: Callable[[], None], discard: Callable[[str], None]) -> bool: ...


current: Deferral | None = None


def install(deferral: Deferral | None) -> Deferral | None:
    """Install ``deferral`` for every runner of the process (None removes it); return the previous one."""
    global current
    previous, current = current, deferral
    return previous
