"""The Store contract: what a runner needs from a place that keeps tasks.

A store holds :class:`TaskRecord` rows. Every waiting or running row has an
*owner* (the process that will run it) or none (any process may claim it).
The life of a row, in store calls::

    enqueue ──> (owned) ──start──> running ──finish──> succeeded | failed
                   ▲                  │ └────retry───> retrying (owned, run_at later)
      claim ───────┘                  └─ owner died ─> recover: queued again (attempt+1),
    (unowned)                                          interrupted (at_most_once) or
                                                       failed worker_lost (poison cap)

Implementations: :class:`~offload.journal.MemoryStore` (also every runner's
bounded in-memory history, :attr:`offload.Runner.history`) and
:class:`~offload.journal.SQLiteJournal`; both pass the conformance suite in
:mod:`offload.testing.journal`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._handle import ErrorInfo

QUEUED, SCHEDULED, RUNNING, RETRYING = "queued", "scheduled", "running", "retrying"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
#: A task not started before its ``expires`` time (kept by a runner's in-memory history;
#: expiry is not journaled).
EXPIRED = "expired"

#: States of rows that wait for an attempt.
WAITING = (QUEUED, SCHEDULED, RETRYING)
#: States of rows that are done for good.
FINISHED = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, EXPIRED)
STATES = (QUEUED, SCHEDULED, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, EXPIRED)

#: ``reason`` of a row failed because its process died while running it too often.
WORKER_LOST = "worker_lost"
#: ``reason`` of a row whose task name is not registered in the process that took it.
UNKNOWN_TASK = "unknown_task"
#: ``reason`` of a row whose payload cannot be decoded.
DECODE_ERROR = "decode_error"
#: ``reason`` of an ``at_most_once`` row whose process died while running it.
PROCESS_DIED = "process_died"

#: Interrupted attempts after which a task is failed with ``worker_lost``.
MAX_INTERRUPTED = 3


@dataclass(slots=True)
class TaskRecord:
    """One task as a store keeps it.

    Attributes:
        id: the task id (``TaskHandle.id``).
        name: the registered task name.
        payload: the arguments as JSON text (see :mod:`offload._codec`); ``""`` in a
            runner's in-memory history when the arguments were not kept (only a failed
            task keeps them) or are not JSON.
        queue: routing label.
        priority: higher first.
        state: one of :data:`STATES`.
        attempts: attempts started so far.
        interrupted: attempts that were running when their process died.
        at_most_once: never re-run an interrupted attempt.
        created_at: wall time of the enqueue.
        run_at: wall time before which it may not start.
        started_at: wall time of the first attempt.
        finished_at: wall time it reached a final state.
        owner: the owner id of the process that holds it, or None.
        result: the return value as JSON text (None if not stored).
        error: the last error recorded.
        reason: why it ended the way it did, when offload decided (e.g. ``worker_lost``).
    """

    id: str
    name: str
    payload: str
    queue: str = "default"
    priority: int = 0
    state: str = QUEUED
    attempts: int = 0
    interrupted: int = 0
    at_most_once: bool = False
    created_at: float = 0.0
    run_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    result: str | None = None
    error: ErrorInfo | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Store.recover` did.

    Attributes:
        dead_owners: owner ids found dead and taken over.
        requeued: ids of interrupted rows queued again for another attempt.
        interrupted: ids of ``at_most_once`` rows marked ``interrupted``.
        worker_lost: ids of rows failed with ``worker_lost`` (poison cap).
        released: waiting rows of dead owners made claimable.
    """

    dead_owners: tuple[str, ...] = ()
    requeued: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    worker_lost: tuple[str, ...] = ()
    released: int = 0


@dataclass(frozen=True, slots=True)
class Owner:
    """A process registered in a store, with the last time it proved alive."""

    owner: str
    heartbeat: float


#: Tells whether an owner id's process lives: True, False, or None (cannot tell).
LivenessCheck = Callable[[str], "bool | None"]


@dataclass(slots=True)
class Filter:
    """Which rows :meth:`Store.list_tasks` returns (all given conditions hold).

    Times are wall times; ``since`` bounds are inclusive, ``before`` ones exclusive.
    ``offset`` rows (in the listing order) are skipped before ``limit`` are returned.
    """

    state: str | None = None
    name: str | None = None
    finished_before: float | None = None
    limit: int = 100
    newest_first: bool = True
    queue: str | None = None
    created_since: float | None = None
    created_before: float | None = None
    finished_since: float | None = None
    offset: int = 0


class Store(abc.ABC):
    """The contract between a runner and the place its tasks are kept.

    Every method is thread-safe. Writes return once they are durable as far as
    the store goes (for :class:`~offload.journal.SQLiteJournal`: in its intake log
    or its file, either of which survives a crash of the process).
    Methods that change one row return whether they did (False: the row is not
    there, not in a state that allows it, or held by another owner).
    """

    #: Where the store lives, for messages (None for memory).
    path: str | None = None

    # -- writes of the task's life ------------------------------------------

    @abc.abstractmethod
    def enqueue(self, records: Sequence[TaskRecord]) -> None:
        """Add new rows (``queued`` or ``scheduled``), all or none."""

    @abc.abstractmethod
    def claim(self, owner: str, limit: int, now: float) -> list[TaskRecord]:
        """Take up to ``limit`` unowned waiting rows due by ``now``; highest priority, then oldest first."""

    @abc.abstractmethod
    def start(self, task_id: str, owner: str, now: float) -> bool:
        """Mark a row held by ``owner`` running and count the attempt.

        A row already running may start again: its previous attempt failed and
        the retry it asked for may not be recorded yet.
        """

    @abc.abstractmethod
    def finish(
        self,
        task_id: str,
        owner: str | None,
        state: str,
        now: float,
        *,
        result: str | None = None,
        error: ErrorInfo | None = None,
        reason: str | None = None,
        wait: bool = True,
    ) -> bool:
        """Record a final state (``succeeded``/``failed``) and let go of the row.

        ``owner=None`` finishes a row whatever holds it (used for rows that
        could not even be loaded). ``wait=False`` may return before the write
        is durable; it is then made durable by the next waiting write or
        :meth:`flush`, and the return value is True.
        """

    @abc.abstractmethod
    def retry(self, task_id: str, owner: str, run_at: float, error: ErrorInfo | None) -> bool:
        """A running row failed an attempt and waits until ``run_at`` for the next one."""

    @abc.abstractmethod
    def cancel(self, task_id: str, reason: str, now: float, *, owner: str | None = None) -> bool:
        """Cancel a waiting row.

        With ``owner``, a row that owner holds in state ``running`` is cancelled
        too: the runner only cancels tasks no attempt of which is going on (a row
        can still say ``running`` when the write that recorded a retry failed).
        """

    @abc.abstractmethod
    def requeue(self, task_id: str, now: float) -> bool:
        """Put a finished row back in the queue, unowned (``offload journal retry``)."""

    @abc.abstractmethod
    def delete(self, task_id: str) -> bool:
        """Remove a row (an enqueue the runner refused after writing it)."""

    def flush(self) -> None:  # noqa: B027 - optional: only buffered stores need it
        """Make every write accepted with ``wait=False`` durable."""

    # -- owners ----------------------------------------------------------------

    @abc.abstractmethod
    def heartbeat(self, owner: str, now: float) -> None:
        """Register ``owner`` or renew its lease."""

    @abc.abstractmethod
    def owners(self) -> list[Owner]:
        """Every registered owner, and owners that hold rows without being registered (heartbeat 0)."""

    @abc.abstractmethod
    def recover(
        self,
        owner: str,
        now: float,
        *,
        lease_timeout: float,
        is_alive: LivenessCheck,
        max_interrupted: int = MAX_INTERRUPTED,
    ) -> Recovery:
        """Take over the rows of dead owners.

        An owner other than ``owner`` is dead when ``is_alive`` says False, or
        says None and its heartbeat is older than ``lease_timeout`` seconds.
        Its running rows were interrupted: an ``at_most_once`` row becomes
        ``interrupted``; a row interrupted ``max_interrupted`` times fails with
        ``worker_lost``; any other is queued again. All its rows become unowned
        (claimable) and the owner is forgotten.
        """

    @abc.abstractmethod
    def release(self, owner: str, now: float, *, keep: Sequence[str] = ()) -> int:
        """Let go of ``owner``'s rows at shutdown: waiting ones become claimable.

        Rows left ``running`` whose id is not in ``keep`` (their attempt is no
        longer going on) are queued again. Returns the rows released. The owner
        stays registered while it keeps running rows.
        """

    # -- reads and housekeeping ------------------------------------------------

    @abc.abstractmethod
    def fetch(self, task_id: str) -> TaskRecord | None:
        """One row by id."""

    @abc.abstractmethod
    def list_tasks(self, where: Filter | None = None) -> list[TaskRecord]:
        """Rows for monitoring, newest first by default."""

    @abc.abstractmethod
    def active_tasks(self, limit: int = 10_000) -> list[TaskRecord]:
        """Up to ``limit`` rows waiting or running, in no particular order.

        Monitoring reads the running rows and the oldest queued one from these;
        a store should answer from what it keeps of its live work (SQLite: the
        owner and claimable indexes), so the cost follows the active rows and
        not the size of the history.
        """

    @abc.abstractmethod
    def count_tasks(self, where: Filter | None = None, *, cap: int | None = None) -> int:
        """Rows matching ``where`` (its ``limit``/``offset`` ignored), counting at most ``cap``.

        A monitoring page shows "1 to 50 of N"; ``cap`` keeps that count from
        reading every row of a huge journal.
        """

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Rows per state (every state in :data:`STATES`, zero included)."""

    @abc.abstractmethod
    def prune(
        self,
        now: float,
        *,
        older_than: float | None = None,
        keep: int | None = None,
        states: Sequence[str] = FINISHED,
    ) -> int:
        """Delete finished rows: those finished more than ``older_than`` seconds ago, then
        all but the newest ``keep``. Returns how many were deleted."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release resources; the store is unusable afterwards."""
