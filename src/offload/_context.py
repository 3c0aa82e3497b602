"""TaskContext: what a task declared with ``bind=True`` (or a ``context`` first
parameter) receives as its first argument."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NoReturn

from ._errors import Retry

if TYPE_CHECKING:
    from ._handle import TaskHandle


class TaskContext:
    """The running task, seen from inside.

    Attributes:
        id: the task id (``None`` when the task is called inline, not enqueued).
        name: the task's registered name.
        cancelled: a :class:`threading.Event` set when ``handle.cancel()`` is
            called while the task runs. Check it in long loops and return early:
            a running attempt is never interrupted by ``cancel()``.
    """

    __slots__ = ("_handle", "_retries", "cancelled", "id", "name")

    def __init__(self, handle: TaskHandle | None, name: str, retries: int) -> None:
        self._handle = handle
        self.id = handle.id if handle is not None else None
        self.name = name
        self._retries = retries
        self.cancelled = threading.Event()

    def __repr__(self) -> str:
        return f"<TaskContext {self.name} id={self.id} attempt={self.attempt}>"

    @property
    def attempt(self) -> int:
        """The number of the attempt that is running, from 1."""
        return self._handle.attempts if self._handle is not None else 1

    @property
    def retries_left(self) -> int:
        """How many more attempts may follow this one."""
        return max(0, self._retries - (self.attempt - 1))

    def retry(self, delay: float | None = None, exc: BaseException | None = None) -> NoReturn:
        """Ask for another attempt: raises :class:`~offload.Retry` (so use ``raise`` or let it propagate).

        Args:
            delay: seconds before the next attempt; ``None`` uses the task's backoff.
            exc: the underlying error, recorded if no retry is left.
        """
        raise Retry(delay=delay, exc=exc)
