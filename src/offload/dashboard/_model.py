"""What the dashboard, the JSON API and the CLI show: plain, frozen records.

A :class:`~offload.dashboard.Source` produces them; the pages, the API and the
``offload status/tasks/show`` commands only render them. ``to_json`` gives the
exact shapes described in ``openapi.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._handle import State

#: Largest page of tasks the API returns at once (``limit``).
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


def to_json(record: Any) -> Any:
    """A record (or a list of records) as JSON-ready dicts and lists."""
    if isinstance(record, list):
        return [to_json(item) for item in record]
    return dataclasses.asdict(record)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters and page of a task listing; times are seconds since the epoch.

    Attributes:
        state: only tasks in this state.
        name: only tasks with exactly this name.
        queue: only tasks routed to this queue.
        since: only tasks created at or after this time.
        until: only tasks created before this time.
        offset: tasks to skip (newest first).
        limit: most tasks returned, 1 to ``MAX_PAGE_SIZE``.
    """

    state: State | None = None
    name: str | None = None
    queue: str | None = None
    since: float | None = None
    until: float | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One line of the task list."""

    id: str
    name: str
    queue: str
    state: str
    priority: int
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    error_type: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """A recorded exception: class path, message, traceback text."""

    type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a task."""

    number: int
    started_at: float
    finished_at: float
    duration: float
    outcome: str
    error: ErrorRecord | None


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """Everything known about one task.

    ``args``/``kwargs`` are ``repr`` texts with secret-looking keyword values
    masked, or ``None`` when the arguments are no longer kept (memory mode lets
    go of them once a task succeeds or is cancelled). ``stack`` is the current
    stack of the thread running the task (live runner only). ``reason`` says
    why offload ended it (e.g. ``worker_lost``) and ``owner`` is the process
    holding it (journal only).
    """

    task: TaskSummary
    args: list[str] | None
    kwargs: dict[str, str] | None
    error: ErrorRecord | None
    attempt_records: list[AttemptRecord]
    cancel_reason: str | None
    stack: str | None
    can_retry: bool
    can_cancel: bool
    reason: str | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of the task list, newest first, and how many matched in all."""

    tasks: list[TaskSummary]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class NameStats:
    """Per-task-name figures over the tasks the source still knows."""

    name: str
    count: int
    active: int
    succeeded: int
    failed: int
    cancelled: int
    failure_rate: float | None
    duration_p50: float | None
    duration_p95: float | None
    last_failure_at: float | None
    last_failure_id: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tasks that finished in ``[start, start + width)``."""

    start: float
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page: current counts, totals, pool and a recent time series.

    ``counts`` holds current numbers for the waiting and running states and
    totals since start for the final ones. ``series`` covers the last
    ``len(series) * bucket_seconds`` seconds, built from the finished tasks the
    source keeps (so it is bounded by ``history`` in memory mode).
    """

    source: str
    now: float
    counts: dict[str, int]
    submitted: int
    retries: int
    failed_attempts: int
    queue_depth: int
    queue_size: int
    workers: int
    threads: int
    busy: int
    idle: int
    abandoned_threads: int
    hook_errors: int
    oldest_queued_age: float | None
    run_time_p50: float | None
    run_time_p99: float | None
    bucket_seconds: float
    series: list[Bucket] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task whose attempt is running now, with its thread's current stack.

    From a journal, ``owner`` names the process running it and there is no
    thread or stack (the thread is in that other process).
    """

    id: str
    name: str
    attempt: int
    started_at: float | None
    age: float | None
    thread_id: int | None
    stack: str | None
    owner: str | None = None


# -- back from JSON (for sources that read the API of another process) -----------


def _error_from(data: dict[str, Any] | None) -> ErrorRecord | None:
    return None if data is None else ErrorRecord(**data)


def overview_from_json(data: dict[str, Any]) -> Overview:
    return Overview(**{**data, "series": [Bucket(**b) for b in data["series"]]})


def page_from_json(data: dict[str, Any]) -> TaskPage:
    return TaskPage(**{**data, "tasks": [TaskSummary(**t) for t in data["tasks"]]})


def detail_from_json(data: dict[str, Any]) -> TaskDetail:
    attempts = [AttemptRecord(**{**a, "error": _error_from(a["error"])}) for a in data["attempt_records"]]
    return TaskDetail(
        **{
            **data,
            "task": TaskSummary(**data["task"]),
            "error": _error_from(data["error"]),
            "attempt_records": attempts,
        }
    )
