"""Frozen snapshots of a runner's counters, as returned by ``Runner.stats()``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._handle import State

if TYPE_CHECKING:
    from ._runner import Runner


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """A point-in-time view of a runner; cheap to take, safe to keep.

    Current counts (``pending``, ``queued``, ``scheduled``, ``running``, ``retrying``) describe
    the moment of the snapshot; totals (``submitted``, ``succeeded``, ``failed``,
    ``cancelled``, ``expired``, ``retries``, ``failed_attempts``) count since the runner was
    created. Run times are over the most recent attempts (a bounded window) and
    are ``None`` until an attempt has finished.
    """

    workers: int
    threads: int
    busy: int
    idle: int
    queue_size: int
    queued: int
    scheduled: int
    running: int
    retrying: int
    pending: int
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    retries: int
    failed_attempts: int
    abandoned_threads: int
    hook_errors: int
    run_time_mean: float | None
    run_time_p50: float | None
    run_time_p99: float | None
    expired: int = 0
    interrupted: int = 0  # journal: tasks of dead processes marked interrupted (at_most_once)

    @property
    def queue_depth(self) -> int:
        """Tasks waiting for a worker or for their time (queued + scheduled + retrying)."""
        return self.queued + self.scheduled + self.retrying

    @property
    def counts(self) -> dict[State, int]:
        """Tasks per state: current for the waiting and running states, totals for the final ones."""
        return {
            State.PENDING: self.pending,
            State.QUEUED: self.queued,
            State.SCHEDULED: self.scheduled,
            State.RUNNING: self.running,
            State.RETRYING: self.retrying,
            State.SUCCEEDED: self.succeeded,
            State.FAILED: self.failed,
            State.CANCELLED: self.cancelled,
            State.EXPIRED: self.expired,
            State.INTERRUPTED: self.interrupted,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def take_stats(runner: Runner) -> RunnerStats:
    """The snapshot ``Runner.stats()`` returns: counters read under the lock, sorted after."""
    with runner._lock:
        durations = sorted(runner._durations)
        counters = dict(
            workers=runner._workers_max,
            threads=runner._n_threads,
            busy=min(runner._n_running, runner._n_threads),
            idle=runner._idle,
            queue_size=runner.settings.queue_size,
            queued=runner._n_queued,
            scheduled=runner._n_scheduled,
            running=runner._n_running,
            retrying=runner._n_retrying,
            pending=runner._n_pending,
            submitted=runner._submitted,
            succeeded=runner._succeeded,
            failed=runner._failed,
            cancelled=runner._cancelled,
            expired=runner._flow_state.expired,
            interrupted=runner._interrupted,
            retries=runner._retries,
            failed_attempts=runner._failed_attempts,
            abandoned_threads=runner._abandoned,
            hook_errors=runner._hooks.errors,
        )
    return RunnerStats(
        **counters,
        run_time_mean=sum(durations) / len(durations) if durations else None,
        run_time_p50=percentile(durations, 0.50),
        run_time_p99=percentile(durations, 0.99),
    )
