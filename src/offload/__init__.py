"""offload: background tasks with the one-line convenience of ``threading.Thread``
and the reliability of a task queue: a bounded pool, retries with backoff,
timeouts, recorded failures, hooks and a graceful drain at exit.

    import offload

    offload.Thread(target=send_welcome_mail, args=(user.pk,)).start()

    @offload.task(retries=3, timeout=30)
    def sync_crm(account_id): ...

    handle = sync_crm.delay(7)
"""

from ._clock import Clock
from ._config import RunnerSettings
from ._context import TaskContext
from ._default import configure, default_runner, get, shutdown, start, stats, submit
from ._errors import (
    ConfigurationError,
    EnqueueError,
    JournalCorruptError,
    JournalError,
    JournalWriteError,
    OffloadError,
    PayloadError,
    PayloadWarning,
    QueueFullError,
    RetriesExhaustedError,
    Retry,
    RunnerClosedError,
    TaskTimeoutError,
)
from ._handle import Attempt, ErrorInfo, State, TaskCancelledError, TaskExpiredError, TaskHandle
from ._hooks import EVENTS, Hook, off, on
from ._periodic import periodic, periodic_tasks
from ._runner import Runner
from ._signals import install_signal_handlers
from ._stats import RunnerStats
from ._task import Task, TaskOptions, registered_tasks, task
from ._thread import Thread
from ._waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, DoneAndNotDone, as_completed, wait

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "EVENTS",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Attempt",
    "Clock",
    "ConfigurationError",
    "DoneAndNotDone",
    "EnqueueError",
    "ErrorInfo",
    "Hook",
    "JournalCorruptError",
    "JournalError",
    "JournalWriteError",
    "OffloadError",
    "PayloadError",
    "PayloadWarning",
    "QueueFullError",
    "RetriesExhaustedError",
    "Retry",
    "Runner",
    "RunnerClosedError",
    "RunnerSettings",
    "RunnerStats",
    "State",
    "Task",
    "TaskCancelledError",
    "TaskContext",
    "TaskExpiredError",
    "TaskHandle",
    "TaskOptions",
    "TaskTimeoutError",
    "Thread",
    "__version__",
    "as_completed",
    "configure",
    "default_runner",
    "get",
    "install_signal_handlers",
    "off",
    "on",
    "periodic",
    "periodic_tasks",
    "registered_tasks",
    "shutdown",
    "start",
    "stats",
    "submit",
    "task",
    "wait",
]
