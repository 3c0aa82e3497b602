"""The TaskResults of the Tasks backend: kept per process and filled in by hooks, or rebuilt
from the journal row in a process that did not enqueue the task."""

from __future__ import annotations

import os
import socket
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from django.utils import timezone as django_timezone
from django.utils.module_loading import import_string

from ... import _hooks
from ..._handle import TaskHandle
from ..._workers import error_info
from .compat import TaskError, TaskResult, TaskResultStatus, task_finished, task_started

_declared: set[str] = set()  # offload names of the framework tasks declared in this process
_declared_lock = threading.Lock()


def declared(name: str) -> None:
    """Note that the offload task ``name`` runs a framework task (its results are recorded)."""
    with _declared_lock:
        _declared.add(name)


def _sender() -> type:
    from .backend import OffloadBackend  # the signals' sender, as Django's backends send their class

    return OffloadBackend


def update(result: TaskResult, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(result, name, value)  # TaskResult is frozen; backends update it in place


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_native_id()}"


def task_error(exc: BaseException) -> TaskError:
    info = error_info(exc)
    return TaskError(exception_class_path=info.type, traceback=info.traceback)


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


class ResultStore:
    """The TaskResults of this process, by id: created at enqueue, or at the first attempt
    in a process that runs journaled tasks it did not enqueue. Bounded."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._results: OrderedDict[str, TaskResult] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, result: TaskResult) -> None:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > self.limit:
                self._results.popitem(last=False)

    def find(self, result_id: str) -> TaskResult | None:
        with self._lock:
            return self._results.get(result_id)

    def for_handle(self, handle: TaskHandle) -> TaskResult:
        found = self.find(handle.id)
        if found is not None:
            return found
        task = import_string(handle.name)
        result = TaskResult(
            task=task,
            id=handle.id,
            status=TaskResultStatus.READY,
            enqueued_at=_when(handle.created_at),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(handle._args or ()),
            kwargs=dict(handle._kwargs or {}),
            backend=task.backend,
            errors=[],
            worker_ids=[],
        )
        self.keep(result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


RESULTS = ResultStore()


class ResultRecorder:
    """Process-wide hooks: keep each framework task's TaskResult in step and send the signals."""

    @staticmethod
    def before_attempt(handle: TaskHandle) -> None:
        if handle.name not in _declared:
            return
        result = RESULTS.for_handle(handle)
        now = django_timezone.now()
        update(result, status=TaskResultStatus.RUNNING, last_attempted_at=now)
        if result.started_at is None:
            update(result, started_at=now)
        result.worker_ids.append(_worker_id())
        task_started.send(sender=_sender(), task_result=result)

    @staticmethod
    def after_retry_scheduled(handle: TaskHandle, exc: BaseException, delay: float) -> None:
        if handle.name not in _declared:
            return
        result = RESULTS.for_handle(handle)
        result.errors.append(task_error(exc))
        update(result, status=TaskResultStatus.READY)

    @staticmethod
    def after_success(handle: TaskHandle, value: Any) -> None:
        if handle.name not in _declared:
            return
        result = RESULTS.for_handle(handle)
        update(result, _return_value=value, status=TaskResultStatus.SUCCESSFUL, finished_at=django_timezone.now())
        task_finished.send(sender=_sender(), task_result=result)

    @staticmethod
    def after_failure(handle: TaskHandle, exc: BaseException) -> None:
        if handle.name not in _declared:
            return
        result = RESULTS.for_handle(handle)
        result.errors.append(task_error(exc))
        update(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
        task_finished.send(sender=_sender(), task_result=result)

    @staticmethod
    def on_done(handle: TaskHandle) -> None:
        """Done callback: a task cancelled before it ran (rollback, shutdown) is FAILED, not READY forever."""
        if not handle.cancelled():
            return
        result = RESULTS.find(handle.id)
        if result is None or result.is_finished:
            return
        result.errors.append(
            TaskError(
                exception_class_path="offload.TaskCancelledError",
                traceback=f"offload.TaskCancelledError: task {handle.name} (id {handle.id}) {handle.cancel_reason}\n",
            )
        )
        update(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
        task_finished.send(sender=_sender(), task_result=result)


_HOOK_EVENTS = ("before_attempt", "after_retry_scheduled", "after_success", "after_failure")


def install_hooks() -> None:
    """Register the recorder on every runner of the process (idempotent): the alias runners,
    and the runner of ``offload_worker`` that runs journaled framework tasks."""
    for event in _HOOK_EVENTS:
        fn = getattr(ResultRecorder, event)
        _hooks.off(event, fn)
        _hooks.on(event)(fn)


# -- TaskResults of other processes, from the journal ---------------------------------------

_STATUS = {
    "pending": TaskResultStatus.READY,
    "queued": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
}
_journals: dict[str, Any] = {}
_journals_lock = threading.Lock()


def _journal(path: str) -> Any:
    from ...journal import SQLiteJournal

    with _journals_lock:
        journal = _journals.get(path)
        if journal is None:
            journal = _journals[path] = SQLiteJournal(path)
        return journal


def result_from_journal(path: str, result_id: str) -> TaskResult | None:
    """A TaskResult rebuilt from the journal row, or None if there is none (or its task cannot be imported)."""
    from ..._codec import decode_payload, decode_value

    record = _journal(path).fetch(result_id)
    if record is None:
        return None
    try:
        task = import_string(record.name)
        args, kwargs = decode_payload(record.payload)
    except (ImportError, ValueError):
        return None
    errors = []
    if record.error is not None:
        text = record.error.traceback or f"{record.error.type}: {record.error.message}\n"
        errors.append(TaskError(exception_class_path=record.error.type, traceback=text))
    result = TaskResult(
        task=task,
        id=record.id,
        status=_STATUS.get(record.state, TaskResultStatus.FAILED),
        enqueued_at=_when(record.created_at),
        started_at=_when(record.started_at),
        finished_at=_when(record.finished_at),
        last_attempted_at=_when(record.started_at),
        args=list(args),
        kwargs=kwargs,
        backend=task.backend,
        errors=errors,
        worker_ids=[record.owner or "journal"] * record.attempts,
    )
    if record.state == "succeeded" and record.result is not None:
        update(result, _return_value=decode_value(record.result))
    return result


def close_journals() -> None:
    """Close the journals opened to read results (tests, and commands that exit)."""
    with _journals_lock:
        journals = list(_journals.values())
        _journals.clear()
    for journal in journals:
        journal.close()


def _reset_locks_after_fork() -> None:
    global _declared_lock, _journals_lock
    # a thread that is gone in the child may have held them at fork()
    _declared_lock, _journals_lock = threading.Lock(), threading.Lock()
    RESULTS._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_after_fork)
