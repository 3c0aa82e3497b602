"""Frozen snapshots of a runner's counters, as returned by ``Runner.stats()``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._handle import State


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
