"""Where the dashboard and the CLI read from: the :class:`Source` protocol.

:class:`LiveSource` reads a :class:`~offload.Runner` of this process. A
journal-backed source (all processes sharing a journal file, also after they
stopped) implements the same protocol; nothing above this module knows which
one it is reading.
"""

from __future__ import annotations

import sys
import traceback
from typing import Protocol, runtime_checkable

from .._handle import ErrorInfo, State, TaskHandle
from .._runner import Runner
from .._stats import percentile
from .._task import Task
from . import _redact
from ._model import (
    AttemptRecord,
    Bucket,
    ErrorRecord,
    NameStats,
    Overview,
    RunningTask,
    TaskDetail,
    TaskPage,
    TaskQuery,
    TaskSummary,
)

#: The overview's time series: this many buckets of this many seconds.
SERIES_BUCKETS = 30
BUCKET_SECONDS = 20.0

# Frames shown of a running task's stack (innermost ones).
_STACK_LIMIT = 40

_WAITING = (State.QUEUED, State.SCHEDULED, State.RETRYING)


class ActionError(Exception):
    """An action could not be done; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class Source(Protocol):
    """What the dashboard, the JSON API and the CLI read (and act on).

    Reads never change anything. The three actions raise :class:`ActionError`
    (404: unknown id, 409: the task is not in a state that allows it).
    """

    @property
    def description(self) -> str:
        """One line saying what is shown, e.g. ``live runner 'offload' (pid 42)``."""
        ...

    def overview(self) -> Overview:
        """Counts, pool and the recent time series."""
        ...

    def tasks(self, query: TaskQuery) -> TaskPage:
        """One page of tasks matching ``query``, newest first."""
        ...

    def task(self, task_id: str) -> TaskDetail | None:
        """Everything about one task, or ``None`` if it is not known."""
        ...

    def names(self) -> list[NameStats]:
        """Per-task-name figures, sorted by name."""
        ...

    def running(self) -> list[RunningTask]:
        """Tasks running now, oldest first."""
        ...

    def retry(self, task_id: str) -> str:
        """Enqueue a failed task again with the same arguments; return the new id."""
        ...

    def cancel(self, task_id: str) -> bool:
        """Cancel a queued, scheduled or retrying task; True if it is now cancelled."""
        ...

    def purge(self) -> int:
        """Forget every finished task; return how many were forgotten."""
        ...


def _error(info: ErrorInfo | None) -> ErrorRecord | None:
    return None if info is None else ErrorRecord(info.type, info.message, info.traceback)


def summary(handle: TaskHandle) -> TaskSummary:
    """The list line of a handle (read without the lock: a torn read shows a moment's state)."""
    error = handle.error
    return TaskSummary(
        id=handle.id,
        name=handle.name,
        queue=handle.queue,
        state=handle.state.value,
        priority=handle.priority,
        attempts=handle.attempts,
        created_at=handle.created_at,
        started_at=handle.started_at,
        finished_at=handle.finished_at,
        next_attempt_at=handle.next_attempt_at,
        error_type=None if error is None else error.type,
        error_message=None if error is None else error.message,
    )


def thread_stack(ident: int | None) -> str | None:
    """The current stack of a live thread, innermost frame last."""
    if ident is None:
        return None
    frame = sys._current_frames().get(ident)
    if frame is None:
        return None
    return "".join(traceback.format_stack(frame, limit=_STACK_LIMIT))


def _matches(handle: TaskHandle, query: TaskQuery) -> bool:
    return (
        (query.state is None or handle.state is query.state)
        and (query.name is None or handle.name == query.name)
        and (query.queue is None or handle.queue == query.queue)
        and (query.since is None or handle.created_at >= query.since)
        and (query.until is None or handle.created_at < query.until)
    )


def _run_time(handle: TaskHandle) -> float | None:
    records = handle._attempt_log
    if not records:
        return None
    return sum(entry[2] for entry in list(records))


class LiveSource:
    """Reads (and acts on) a runner of this process.

    Listing copies the runner's task tables under its lock (a few microseconds
    per thousand tasks) and reads each handle outside it.

    Args:
        runner: the runner to show; the default runner when ``None``.
    """

    def __init__(self, runner: Runner | None = None) -> None:
        if runner is None:
            from .._default import default_runner

            runner = default_runner()
        if not isinstance(runner, Runner):
            raise TypeError(f"LiveSource: expected an offload.Runner, got {runner!r}")
        self.runner = runner

    @property
    def description(self) -> str:
        import os

        return f"live runner {self.runner.name!r} (pid {os.getpid()})"

    def overview(self) -> Overview:
        runner = self.runner
        stats = runner.stats()
        now = runner._wall()
        start = now - SERIES_BUCKETS * BUCKET_SECONDS
        succeeded = [0] * SERIES_BUCKETS
        failed = [0] * SERIES_BUCKETS
        oldest: float | None = None
        for handle in self.runner._snapshot():
            state = handle.state
            if state is State.QUEUED and (oldest is None or handle.created_at < oldest):
                oldest = handle.created_at
            finished = handle.finished_at
            if finished is None or finished < start or state is State.CANCELLED:
                continue
            index = min(int((finished - start) // BUCKET_SECONDS), SERIES_BUCKETS - 1)
            if state is State.SUCCEEDED:
                succeeded[index] += 1
            elif state is State.FAILED:
                failed[index] += 1
        series = [Bucket(start + i * BUCKET_SECONDS, succeeded[i], failed[i]) for i in range(SERIES_BUCKETS)]
        return Overview(
            source=self.description,
            now=now,
            counts={state.value: n for state, n in stats.counts.items()},
            submitted=stats.submitted,
            retries=stats.retries,
            failed_attempts=stats.failed_attempts,
            queue_depth=stats.queue_depth,
            queue_size=stats.queue_size,
            workers=stats.workers,
            threads=stats.threads,
            busy=stats.busy,
            idle=stats.idle,
            abandoned_threads=stats.abandoned_threads,
            hook_errors=stats.hook_errors,
            oldest_queued_age=None if oldest is None else max(0.0, now - oldest),
            run_time_p50=stats.run_time_p50,
            run_time_p99=stats.run_time_p99,
            bucket_seconds=BUCKET_SECONDS,
            series=series,
        )

    def tasks(self, query: TaskQuery) -> TaskPage:
        found = [h for h in self.runner._snapshot() if _matches(h, query)]
        found.sort(key=lambda h: (h.created_at, h.id), reverse=True)  # ids grow within a process
        page = found[query.offset : query.offset + query.limit]
        return TaskPage([summary(h) for h in page], len(found), query.offset, query.limit)

    def task(self, task_id: str) -> TaskDetail | None:
        handle = self.runner.get(task_id)
        if handle is None:
            return None
        args, kwargs = handle._args, handle._kwargs
        state = handle.state
        return TaskDetail(
            task=summary(handle),
            args=None if args is None else _redact.show_args(args),
            kwargs=None if kwargs is None else _redact.show_kwargs(kwargs),
            error=_error(handle.error),
            attempt_records=[
                AttemptRecord(a.number, a.started_at, a.finished_at, a.duration, a.outcome, _error(a.error))
                for a in handle.attempt_records
            ],
            cancel_reason=handle.cancel_reason,
            stack=thread_stack(handle._thread_ident) if state is State.RUNNING else None,
            can_retry=state is State.FAILED and handle._fn is not None,
            can_cancel=state in _WAITING,
        )

    def names(self) -> list[NameStats]:
        groups: dict[str, list[TaskHandle]] = {}
        for handle in self.runner._snapshot():
            groups.setdefault(handle.name, []).append(handle)
        return [_name_stats(name, groups[name]) for name in sorted(groups)]

    def running(self) -> list[RunningTask]:
        now = self.runner._wall()
        running = [h for h in self.runner._snapshot() if h.state is State.RUNNING]
        running.sort(key=lambda h: h.started_at or 0.0)
        return [
            RunningTask(
                id=h.id,
                name=h.name,
                attempt=h.attempts,
                started_at=h.started_at,
                age=None if h.started_at is None else max(0.0, now - h.started_at),
                thread_id=h._thread_ident,
                stack=thread_stack(h._thread_ident),
            )
            for h in running
        ]

    # -- actions ------------------------------------------------------------

    def _get(self, task_id: str) -> TaskHandle:
        handle = self.runner.get(task_id)
        if handle is None:
            raise ActionError(f"no task with id {task_id!r} (unknown, or no longer in the history)", 404)
        return handle

    def retry(self, task_id: str) -> str:
        handle = self._get(task_id)
        fn, args, kwargs = handle._fn, handle._args, handle._kwargs
        if handle.state is not State.FAILED or fn is None or args is None or kwargs is None:
            raise ActionError(
                f"task {handle.name} (id {handle.id}) is {handle.state.value}; only a failed task can be retried", 409
            )
        runner = self.runner
        if handle._options is runner._plain_options:
            new = runner._enqueue(fn, args, kwargs, priority=handle.priority, name=handle.name)
        else:
            new = runner._enqueue(Task(fn, handle._options), args, kwargs, priority=handle.priority)
        from .._log import runner_log

        runner_log.info("task %s (id %s) retried from the dashboard as id %s", handle.name, handle.id, new.id)
        return new.id

    def cancel(self, task_id: str) -> bool:
        handle = self._get(task_id)
        if handle.state not in _WAITING and handle.state is not State.CANCELLED:
            raise ActionError(
                f"task {handle.name} (id {handle.id}) is {handle.state.value}; "
                "only a queued, scheduled or retrying task can be cancelled",
                409,
            )
        return handle.cancel()

    def purge(self) -> int:
        runner = self.runner
        purged = runner.history.prune(runner._wall(), keep=0)
        from .._log import runner_log

        runner_log.info("purged %d finished tasks of runner %r from the dashboard", purged, runner.name)
        return purged


def _name_stats(name: str, handles: list[TaskHandle]) -> NameStats:
    succeeded = failed = cancelled = 0
    run_times: list[float] = []
    last: TaskHandle | None = None
    for handle in handles:
        state = handle.state
        if state is State.SUCCEEDED:
            succeeded += 1
        elif state is State.FAILED:
            failed += 1
            if last is None or (handle.finished_at or 0.0) > (last.finished_at or 0.0):
                last = handle
        elif state is State.CANCELLED:
            cancelled += 1
        if state is State.SUCCEEDED or state is State.FAILED:
            run_time = _run_time(handle)
            if run_time is not None:
                run_times.append(run_time)
    run_times.sort()
    finished = succeeded + failed
    error = None if last is None else last.error
    return NameStats(
        name=name,
        count=len(handles),
        active=len(handles) - succeeded - failed - cancelled,
        succeeded=succeeded,
        failed=failed,
        cancelled=cancelled,
        failure_rate=failed / finished if finished else None,
        duration_p50=percentile(run_times, 0.50),
        duration_p95=percentile(run_times, 0.95),
        last_failure_at=None if last is None else last.finished_at,
        last_failure_id=None if last is None else last.id,
        last_error=None if error is None else f"{error.type}: {error.message}",
    )
