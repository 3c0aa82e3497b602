"""A :class:`~offload.dashboard.Source` over a journal: every process that shares it, also after they stopped.

The live runner knows its own process only, and forgets everything when the
process ends. A journal file is shared by every process configured with it
(web workers, ``offload worker``, cron scripts), so reading it shows all of
their tasks, and still works when none of them runs any more.

What a journal cannot show, and why:

- per-attempt records: a row keeps the attempt count, the first start, the end
  and the last error (the live runner keeps each attempt);
- the stack of a running task: its thread is in another process;
- pool figures (workers, threads, idle, abandoned threads, hook errors): they
  are per process, so they read 0 here; ``busy`` is the rows running now.

Reads are bounded: pages use ``LIMIT``/``OFFSET`` and a capped count, the time
series an index range on ``finished_at``, the running list and the oldest queued
task :meth:`~offload.journal.Store.active_tasks` (the indexes of live rows). The
per-state counts are one count per state, from the same indexes: still in
proportion to the finished rows, but reading an index, not the table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from .._codec import PayloadDecodeError, decode_payload
from .._errors import JournalError
from .._handle import ErrorInfo, State
from .._stats import percentile
from ..journal import FINISHED, STATES, WAITING, Filter, SQLiteJournal, Store, TaskRecord
from . import _redact
from ._model import (
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
from ._source import BUCKET_SECONDS, SERIES_BUCKETS, ActionError

log = logging.getLogger("offload.dashboard")

#: Most finished rows per state read for the overview's time series and run times.
SERIES_ROWS = 20_000
#: Per-name figures cover the newest this many rows.
NAME_ROWS = 5_000
#: Most waiting and running rows read for the running list and the oldest queued age.
ACTIVE_ROWS = 10_000
#: A task list's total is counted up to this many rows ("1 to 50 of 10000" means at least).
COUNT_CAP = 10_000

_RETRYABLE = (State.FAILED.value, State.INTERRUPTED.value)


def open_journal(path: str | os.PathLike[str]) -> SQLiteJournal:
    """Open an existing journal file for monitoring; never create one.

    Raises:
        JournalError: there is no file at ``path``, or it cannot be opened (damaged,
            newer schema, not a journal).
    """
    text = os.fspath(path)
    if not os.path.isfile(text):
        where = os.path.abspath(text)
        raise JournalError(
            f"no journal at {where}: no such file (a monitor never creates one; "
            "give the path the application's runner was configured with, journal=PATH)"
        )
    # No quick_check: it reads the whole file on every `offload status`; a damaged
    # page still raises JournalCorruptError when a read reaches it.
    return SQLiteJournal(text, check_on_open=False)


def _error(info: ErrorInfo | None) -> ErrorRecord | None:
    return None if info is None else ErrorRecord(info.type, info.message, info.traceback)


def _state(record: TaskRecord) -> State:
    try:
        return State(record.state)
    except ValueError:  # a state written by a newer offload: show it as what it is closest to
        return State.FAILED if record.finished_at is not None else State.QUEUED


def _summary(record: TaskRecord) -> TaskSummary:
    error = record.error
    return TaskSummary(
        id=record.id,
        name=record.name,
        queue=record.queue,
        state=_state(record).value,
        priority=record.priority,
        attempts=record.attempts,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        next_attempt_at=record.run_at if record.state in WAITING and record.state != "queued" else None,
        error_type=None if error is None else error.type,
        error_message=None if error is None else error.message,
    )


def _run_time(record: TaskRecord) -> float | None:
    """First start to end: the run time of a task that succeeded at once, with retry waits otherwise."""
    if record.started_at is None or record.finished_at is None:
        return None
    return max(0.0, record.finished_at - record.started_at)


def _arguments(payload: object) -> tuple[list[str], dict[str, str]]:
    try:
        args, kwargs = decode_payload(payload)
    except PayloadDecodeError as exc:
        return [f"<the stored arguments cannot be decoded: {exc}>"], {}
    return _redact.show_args(args), _redact.show_kwargs(kwargs)


class JournalSource:
    """Reads (and acts on) a journal: the tasks of every process that shares it.

    Args:
        journal: the journal file's path (it must exist: a monitor never creates
            one), or an open :class:`~offload.journal.Store`.
        clock: wall time, for ages and the time series.

    Raises:
        JournalError: there is no journal at the path, or it cannot be opened.
    """

    def __init__(self, journal: str | os.PathLike[str] | Store, *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(journal, Store):
            self.store, self._owned = journal, False
        elif isinstance(journal, (str, os.PathLike)):
            self.store, self._owned = open_journal(journal), True
        else:
            raise TypeError(f"JournalSource: journal must be a path or an offload.journal.Store, got {journal!r}")
        self._clock = clock

    def close(self) -> None:
        """Close the journal if this source opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> JournalSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def description(self) -> str:
        where = self.store.path or "in memory"
        owners = len(self.store.owners())
        return f"journal {where} ({owners} process{'' if owners == 1 else 'es'} registered)"

    # -- reads -----------------------------------------------------------------

    def overview(self) -> Overview:
        store = self.store
        now = self._clock()
        counts = {state.value: 0 for state in State}
        for state in STATES:
            if state in counts:
                # One index-backed count per state: a quarter of the time of Store.counts's
                # pass over the table (11 ms against 46 at 200,000 rows).
                counts[state] = store.count_tasks(Filter(state=state))
        queued = [r.created_at for r in store.active_tasks(ACTIVE_ROWS) if r.state == State.QUEUED.value]
        start = now - SERIES_BUCKETS * BUCKET_SECONDS
        buckets = {State.SUCCEEDED.value: [0] * SERIES_BUCKETS, State.FAILED.value: [0] * SERIES_BUCKETS}
        run_times: list[float] = []
        for state, column in buckets.items():
            for record in store.list_tasks(Filter(state=state, finished_since=start, limit=SERIES_ROWS)):
                finished = record.finished_at
                if finished is None:
                    continue
                column[min(max(int((finished - start) // BUCKET_SECONDS), 0), SERIES_BUCKETS - 1)] += 1
                run_time = _run_time(record)
                if run_time is not None:
                    run_times.append(run_time)
        run_times.sort()
        succeeded, failed = buckets[State.SUCCEEDED.value], buckets[State.FAILED.value]
        return Overview(
            source=self.description,
            now=now,
            counts=counts,
            submitted=sum(counts.values()),
            retries=0,
            failed_attempts=0,
            queue_depth=counts[State.QUEUED.value],
            queue_size=0,
            workers=0,
            threads=0,
            busy=counts[State.RUNNING.value],
            idle=0,
            abandoned_threads=0,
            hook_errors=0,
            oldest_queued_age=max(0.0, now - min(queued)) if queued else None,
            run_time_p50=percentile(run_times, 0.50),
            run_time_p99=percentile(run_times, 0.99),
            bucket_seconds=BUCKET_SECONDS,
            series=[Bucket(start + i * BUCKET_SECONDS, succeeded[i], failed[i]) for i in range(SERIES_BUCKETS)],
        )

    def tasks(self, query: TaskQuery) -> TaskPage:
        where = Filter(
            state=None if query.state is None else query.state.value,
            name=query.name,
            queue=query.queue,
            created_since=query.since,
            created_before=query.until,
            offset=query.offset,
            limit=query.limit,
        )
        records = self.store.list_tasks(where)
        total = self.store.count_tasks(where, cap=max(COUNT_CAP, query.offset + len(records)))
        return TaskPage([_summary(r) for r in records], total, query.offset, query.limit)

    def task(self, task_id: str) -> TaskDetail | None:
        record = self.store.fetch(task_id)
        if record is None:
            return None
        args, kwargs = _arguments(record.payload)
        state = _state(record)
        return TaskDetail(
            task=_summary(record),
            args=args,
            kwargs=kwargs,
            error=_error(record.error),
            attempt_records=[],
            cancel_reason=record.reason if state is State.CANCELLED else None,
            stack=None,
            can_retry=record.state in _RETRYABLE,
            can_cancel=record.state in WAITING,
            reason=record.reason,
            owner=record.owner,
        )

    def names(self) -> list[NameStats]:
        groups: dict[str, list[TaskRecord]] = {}
        for record in self.store.list_tasks(Filter(limit=NAME_ROWS)):
            groups.setdefault(record.name, []).append(record)
        return [_name_stats(name, groups[name]) for name in sorted(groups)]

    def running(self) -> list[RunningTask]:
        now = self._clock()
        rows = [r for r in self.store.active_tasks(ACTIVE_ROWS) if r.state == State.RUNNING.value]
        rows.sort(key=lambda r: r.started_at or 0.0)
        return [
            RunningTask(
                id=r.id,
                name=r.name,
                attempt=r.attempts,
                started_at=r.started_at,
                age=None if r.started_at is None else max(0.0, now - r.started_at),
                thread_id=None,
                stack=None,
                owner=r.owner,
            )
            for r in rows
        ]

    # -- actions ---------------------------------------------------------------

    def _get(self, task_id: str) -> TaskRecord:
        record = self.store.fetch(task_id)
        if record is None:
            raise ActionError(f"no task with id {task_id!r} in journal {self.store.path} (unknown, or pruned)", 404)
        return record

    def retry(self, task_id: str) -> str:
        """Queue a failed (or interrupted) row again, unowned: any live process on the journal runs it.

        The row keeps its id, so the id returned is ``task_id``.
        """
        record = self._get(task_id)
        if record.state not in _RETRYABLE or not self.store.requeue(task_id, self._clock()):
            state = self._get(task_id).state
            raise ActionError(
                f"task {record.name} (id {task_id}) is {state}; only a failed or interrupted task can be retried", 409
            )
        log.info("task %s (id %s) queued again in journal %s from the dashboard", record.name, task_id, self.store.path)
        return task_id

    def cancel(self, task_id: str) -> bool:
        """Cancel a waiting row; the process holding it skips it when its turn comes."""
        record = self._get(task_id)
        if record.state == State.CANCELLED.value:
            return True  # already: cancelling is idempotent
        if record.state not in WAITING or not self.store.cancel(task_id, "cancelled from the dashboard", self._clock()):
            state = self._get(task_id).state
            raise ActionError(
                f"task {record.name} (id {task_id}) is {state}; "
                "only a queued, scheduled or retrying task can be cancelled",
                409,
            )
        log.info("task %s (id %s) cancelled in journal %s from the dashboard", record.name, task_id, self.store.path)
        return True

    def purge(self) -> int:
        """Delete every finished row (succeeded, failed, cancelled, interrupted)."""
        purged = self.store.prune(self._clock(), keep=0, states=FINISHED)
        log.info("purged %d finished rows of journal %s from the dashboard", purged, self.store.path)
        return purged


def _name_stats(name: str, records: list[TaskRecord]) -> NameStats:
    by_state: dict[str, int] = {}
    run_times: list[float] = []
    last: TaskRecord | None = None
    for record in records:
        by_state[record.state] = by_state.get(record.state, 0) + 1
        if record.state == State.FAILED.value and (
            last is None or (record.finished_at or 0.0) > (last.finished_at or 0.0)
        ):
            last = record
        if record.state in (State.SUCCEEDED.value, State.FAILED.value):
            run_time = _run_time(record)
            if run_time is not None:
                run_times.append(run_time)
    run_times.sort()
    succeeded, failed = by_state.get(State.SUCCEEDED.value, 0), by_state.get(State.FAILED.value, 0)
    cancelled = by_state.get(State.CANCELLED.value, 0)
    finished = sum(by_state.get(state, 0) for state in FINISHED)
    error = None if last is None else last.error
    return NameStats(
        name=name,
        count=len(records),
        active=len(records) - finished,
        succeeded=succeeded,
        failed=failed,
        cancelled=cancelled,
        failure_rate=failed / (succeeded + failed) if succeeded + failed else None,
        duration_p50=percentile(run_times, 0.50),
        duration_p95=percentile(run_times, 0.95),
        last_failure_at=None if last is None else last.finished_at,
        last_failure_id=None if last is None else last.id,
        last_error=None if error is None else f"{error.type}: {error.message}",
    )
