"""Exceptions raised by offload.

The tree::

    OffloadError
    ├── ConfigurationError        bad option given to configure(), Runner(), @task, ...
    ├── EnqueueError              a task could not be accepted
    │   ├── PayloadError          an argument cannot travel with the task
    │   ├── QueueFullError        admission bound reached
    │   └── RunnerClosedError     the runner is shutting down or shut down
    ├── TaskCancelledError        result() of a task cancelled, dropped or expired (in _handle.py)
    │   └── TaskExpiredError      not started before its ``expires`` time
    ├── TaskTimeoutError          an attempt ran past its ``timeout``
    ├── RetriesExhaustedError     ``Retry`` was raised with no retries left
    └── JournalError              (reserved for the durable journal)
        ├── JournalWriteError
        └── JournalCorruptError

``Retry`` is flow control, not an error: it sits outside the tree on purpose, so
that ``except OffloadError`` never swallows a retry request.
"""

from __future__ import annotations


class OffloadError(Exception):
    """Root of every error offload raises itself."""


class ConfigurationError(OffloadError, ValueError):
    """An option has a value offload cannot use.

    The message names the option, the value given and what was expected.
    """


class EnqueueError(OffloadError):
    """A task could not be accepted; nothing was queued."""


class PayloadError(EnqueueError, TypeError):
    """An argument cannot be carried to the worker: bound to the web request, or not
    JSON where arguments are stored (a journal, Django's Tasks framework)."""


class QueueFullError(EnqueueError):
    """The runner holds ``queue_size`` pending tasks already."""


class RunnerClosedError(EnqueueError):
    """The runner no longer accepts work because it is shutting down."""


class TaskTimeoutError(OffloadError, TimeoutError):
    """An attempt ran longer than the task's ``timeout`` and was interrupted."""


class RetriesExhaustedError(OffloadError):
    """A task raised ``Retry`` but had no retries left."""


class JournalError(OffloadError):
    """The durable journal cannot be used."""


class JournalWriteError(JournalError):
    """A write to the journal failed; the task was not accepted."""


class JournalCorruptError(JournalError):
    """The journal file is damaged and was refused."""


class PayloadWarning(UserWarning):
    """An argument works in memory mode but is a likely mistake (a database row
    passed where its primary key belongs); a journal would refuse it."""


class Retry(Exception):  # noqa: N818 - flow control, named like Celery's and Dramatiq's
    """Raise inside a task to ask for another attempt.

    Args:
        delay: seconds to wait before the next attempt; ``None`` uses the task's
            backoff policy.
        exc: the underlying error, kept as the attempt's recorded cause.

    A ``Retry`` counts against the task's ``retries``. When none are left the task
    fails with :class:`RetriesExhaustedError`.
    """

    def __init__(self, delay: float | None = None, exc: BaseException | None = None) -> None:
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise TypeError(f"Retry(delay=...) must be seconds as a number, got {delay!r}")
            if not delay >= 0:  # also rejects NaN
                raise ValueError(f"Retry(delay=...) must be >= 0 seconds, got {delay!r}")
        super().__init__(delay, exc)
        self.delay: float | None = None if delay is None else float(delay)
        self.exc = exc

    def __str__(self) -> str:
        when = "with the task's backoff" if self.delay is None else f"in {self.delay:g}s"
        cause = f" after {type(self.exc).__name__}: {self.exc}" if self.exc is not None else ""
        return f"retry requested {when}{cause}"


class NotRunError(Exception):
    """Raised by a task's function, before any of the task's code, when the attempt must not run.

    Journal mode: the row was cancelled elsewhere (the dashboard) or another process
    took it over. Internal: the task ends ``CANCELLED`` with this message as its
    ``cancel_reason``; no retry, no failure.
    """


# Public under ``offload``: tracebacks, logs and error records say ``offload.TaskTimeoutError``,
# the name users import and catch, not this private module's.
for _cls in (
    OffloadError,
    ConfigurationError,
    EnqueueError,
    PayloadError,
    QueueFullError,
    RunnerClosedError,
    TaskTimeoutError,
    RetriesExhaustedError,
    JournalError,
    JournalWriteError,
    JournalCorruptError,
    Retry,
    PayloadWarning,
):
    _cls.__module__ = "offload"
del _cls
