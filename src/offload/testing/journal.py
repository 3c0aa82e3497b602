"""The Store conformance suite: one set of tests every store must pass.

Subclass :class:`StoreConformance` in a test module and provide the ``store``
fixture::

    from offload.journal import SQLiteJournal
    from offload.testing.journal import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            journal = SQLiteJournal(tmp_path / "j.sqlite3")
            yield journal
            journal.close()

Time is passed explicitly (``now``), so nothing here waits or sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._handle import ErrorInfo
from ..journal import (
    MAX_INTERRUPTED,
    PROCESS_DIED,
    WORKER_LOST,
    Filter,
    Store,
    TaskRecord,
)

ME, OTHER, THIRD = "host:1:100", "host:2:200", "host:3:300"
T0 = 1_000_000.0


def record(n: int, *, owner: str | None = ME, state: str = "queued", priority: int = 0, **fields: Any) -> TaskRecord:
    """A row with id ``t<n>``, queued and owned by ``ME`` unless told otherwise."""
    defaults: dict[str, Any] = dict(created_at=T0 + n, run_at=T0 + n)
    defaults.update(fields)
    return TaskRecord(
        id=f"t{n}", name="tests.job", payload=f"[[{n}],{{}}]", owner=owner, state=state, priority=priority, **defaults
    )


def alive_only(*owners: str) -> object:
    """An ``is_alive`` that knows exactly which owners live."""
    return lambda owner: owner in owners


def unknown(owner: str) -> None:
    """An ``is_alive`` that can never tell (another host): only leases count."""
    return


ERROR = ErrorInfo("builtins.ValueError", "bad", "Traceback ...\nValueError: bad\n")


class StoreConformance:
    """Tests of the :class:`~offload.journal.Store` contract; needs a ``store`` fixture."""

    # -- enqueue and fetch -----------------------------------------------------

    def test_enqueue_then_fetch_round_trips_every_field(self, store: Store) -> None:
        row = record(1, priority=5, queue="mail", at_most_once=True, attempts=0)
        store.enqueue([row])
        got = store.fetch("t1")
        assert got == row
        assert store.fetch("nope") is None
        started = record(2, state="running", attempts=1, started_at=T0 + 2)  # enqueued already started
        store.enqueue([started])
        assert store.fetch("t2") == started

    def test_enqueue_is_all_or_nothing(self, store: Store) -> None:
        store.enqueue([record(1)])
        with pytest.raises(Exception):  # noqa: B017, PT011 - each store has its own error type
            store.enqueue([record(2), record(1)])
        assert store.fetch("t2") is None

    # -- claim -----------------------------------------------------------------

    def test_claim_takes_unowned_due_rows_by_priority_then_age(self, store: Store) -> None:
        store.enqueue(
            [
                record(1, owner=None),
                record(2, owner=None, priority=9),
                record(3, owner=OTHER),
                record(4, owner=None, state="scheduled", run_at=T0 + 100),
                record(5, owner=None),
                record(6, owner=None, state="succeeded"),
            ]
        )
        claimed = store.claim(ME, 2, T0 + 10)
        assert [r.id for r in claimed] == ["t2", "t1"]
        assert all(r.owner == ME for r in claimed)
        assert [r.id for r in store.claim(THIRD, 10, T0 + 10)] == ["t5"]
        assert store.claim(THIRD, 10, T0 + 10) == []
        assert [r.id for r in store.claim(THIRD, 10, T0 + 100)] == ["t4"]
        assert store.fetch("t3").owner == OTHER  # type: ignore[union-attr]

    # -- start, finish, retry --------------------------------------------------

    def test_start_counts_the_attempt_only_for_the_owner(self, store: Store) -> None:
        store.enqueue([record(1)])
        assert not store.start("t1", OTHER, T0 + 1)
        assert store.start("t1", ME, T0 + 1)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.attempts, row.started_at) == ("running", 1, T0 + 1)
        assert store.start("t1", ME, T0 + 2)  # the next attempt, before its retry was recorded
        assert store.fetch("t1").attempts == 2  # type: ignore[union-attr]
        store.finish("t1", ME, "succeeded", T0 + 3)
        assert not store.start("t1", ME, T0 + 4)  # finished
        assert not store.start("missing", ME, T0)

    def test_finish_records_the_outcome_and_lets_go(self, store: Store) -> None:
        store.enqueue([record(1), record(2)])
        store.start("t1", ME, T0)
        assert not store.finish("t1", OTHER, "succeeded", T0 + 1)
        assert store.finish("t1", ME, "succeeded", T0 + 1, result='{"ok":1}')
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.result, row.finished_at, row.owner) == ("succeeded", '{"ok":1}', T0 + 1, None)
        assert store.finish("t2", None, "failed", T0 + 2, error=ERROR, reason="unknown_task")
        row = store.fetch("t2")
        assert row is not None
        assert (row.state, row.error, row.reason) == ("failed", ERROR, "unknown_task")
        with pytest.raises(ValueError, match="final state"):
            store.finish("t2", None, "running", T0)

    def test_finish_without_waiting_is_durable_after_flush(self, store: Store) -> None:
        store.enqueue([record(1)])
        store.start("t1", ME, T0)
        assert store.finish("t1", ME, "succeeded", T0 + 1, wait=False)
        store.flush()
        assert store.fetch("t1").state == "succeeded"  # type: ignore[union-attr]

    def test_retry_keeps_the_row_owned_until_its_time(self, store: Store) -> None:
        store.enqueue([record(1)])
        assert not store.retry("t1", ME, T0 + 50, ERROR)  # not running
        store.start("t1", ME, T0)
        assert store.retry("t1", ME, T0 + 50, ERROR)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.run_at, row.error, row.owner) == ("retrying", T0 + 50, ERROR, ME)
        assert store.start("t1", ME, T0 + 50)
        assert store.fetch("t1").attempts == 2  # type: ignore[union-attr]

    # -- cancel, requeue, delete -----------------------------------------------

    def test_cancel_only_waiting_rows(self, store: Store) -> None:
        store.enqueue([record(1), record(2)])
        store.start("t2", ME, T0)
        assert store.cancel("t1", "cancelled", T0 + 1)
        assert not store.cancel("t2", "cancelled", T0 + 1)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.reason, row.owner) == ("cancelled", "cancelled", None)

    def test_cancel_with_its_owner_covers_a_row_marked_started_that_never_began(self, store: Store) -> None:
        store.enqueue([record(1, state="running", attempts=1), record(2, owner=OTHER, state="running")])
        assert not store.cancel("t1", "cancelled", T0 + 1)
        assert not store.cancel("t2", "cancelled", T0 + 1, owner=ME)
        assert store.cancel("t1", "cancelled", T0 + 1, owner=ME)
        assert store.fetch("t1").state == "cancelled"  # type: ignore[union-attr]

    def test_requeue_puts_a_finished_row_back_unowned(self, store: Store) -> None:
        store.enqueue([record(1), record(2)])
        store.start("t1", ME, T0)
        store.finish("t1", ME, "failed", T0 + 1, error=ERROR, reason=WORKER_LOST)
        assert not store.requeue("t2", T0 + 2)  # still waiting
        assert store.requeue("t1", T0 + 2)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.owner, row.reason, row.run_at) == ("queued", None, None, T0 + 2)
        assert [r.id for r in store.claim(OTHER, 10, T0 + 2)] == ["t1"]

    def test_delete(self, store: Store) -> None:
        store.enqueue([record(1)])
        assert store.delete("t1")
        assert not store.delete("t1")
        assert store.fetch("t1") is None

    # -- owners and recovery ---------------------------------------------------

    def test_owners_include_unregistered_holders(self, store: Store) -> None:
        store.heartbeat(ME, T0)
        store.heartbeat(ME, T0 + 5)
        store.enqueue([record(1, owner=OTHER)])
        assert {(o.owner, o.heartbeat) for o in store.owners()} == {(ME, T0 + 5), (OTHER, 0.0)}

    def test_recover_requeues_a_dead_owners_running_row_and_frees_its_waiting_rows(self, store: Store) -> None:
        store.heartbeat(OTHER, T0)
        store.enqueue([record(1, owner=OTHER), record(2, owner=OTHER), record(3, owner=ME)])
        store.start("t1", OTHER, T0)
        store.start("t3", ME, T0)
        recovery = store.recover(ME, T0 + 1, lease_timeout=3.0, is_alive=alive_only(ME))  # type: ignore[arg-type]
        assert recovery.dead_owners == (OTHER,)
        assert recovery.requeued == ("t1",)
        assert recovery.released == 1
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.interrupted, row.attempts, row.owner) == ("queued", 1, 1, None)
        assert store.fetch("t3").state == "running"  # type: ignore[union-attr]
        assert OTHER not in {o.owner for o in store.owners()}
        assert sorted(r.id for r in store.claim(ME, 10, T0 + 5)) == ["t1", "t2"]
        assert store.start("t1", ME, T0 + 5)
        assert store.fetch("t1").attempts == 2  # type: ignore[union-attr]

    def test_recover_never_takes_a_live_owners_work_even_with_a_stale_heartbeat(self, store: Store) -> None:
        store.heartbeat(OTHER, T0)
        store.enqueue([record(1, owner=OTHER)])
        store.start("t1", OTHER, T0)
        alive = alive_only(ME, OTHER)
        recovery = store.recover(ME, T0 + 3600, lease_timeout=3.0, is_alive=alive)  # type: ignore[arg-type]
        assert recovery.dead_owners == ()
        assert store.fetch("t1").state == "running"  # type: ignore[union-attr]

    def test_recover_uses_the_lease_when_liveness_is_unknown(self, store: Store) -> None:
        store.heartbeat(OTHER, T0)
        store.enqueue([record(1, owner=OTHER)])
        assert store.recover(ME, T0 + 2.9, lease_timeout=3.0, is_alive=unknown).dead_owners == ()
        assert store.recover(ME, T0 + 3.1, lease_timeout=3.0, is_alive=unknown).dead_owners == (OTHER,)
        assert store.fetch("t1").owner is None  # type: ignore[union-attr]

    def test_recover_marks_at_most_once_rows_interrupted(self, store: Store) -> None:
        store.enqueue([record(1, owner=OTHER, at_most_once=True)])
        store.start("t1", OTHER, T0)
        recovery = store.recover(ME, T0 + 1, lease_timeout=3.0, is_alive=alive_only(ME))  # type: ignore[arg-type]
        assert recovery.interrupted == ("t1",)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.reason, row.owner) == ("interrupted", PROCESS_DIED, None)
        assert store.claim(ME, 10, T0 + 5) == []

    def test_poison_task_fails_with_worker_lost_after_the_cap(self, store: Store) -> None:
        store.enqueue([record(1, owner=OTHER)])
        dead = alive_only(ME)
        for round_ in range(1, MAX_INTERRUPTED + 1):
            holder = f"host:{10 + round_}:1"
            if round_ > 1:
                assert [r.id for r in store.claim(holder, 10, T0 + round_)] == ["t1"]
            else:
                holder = OTHER
            assert store.start("t1", holder, T0 + round_)
            recovery = store.recover(ME, T0 + round_, lease_timeout=3.0, is_alive=dead)  # type: ignore[arg-type]
            if round_ < MAX_INTERRUPTED:
                assert recovery.requeued == ("t1",)
        assert recovery.worker_lost == ("t1",)
        row = store.fetch("t1")
        assert row is not None
        assert (row.state, row.reason, row.interrupted, row.attempts) == ("failed", WORKER_LOST, 3, 3)
        assert row.error is not None
        assert "offload journal retry t1" in row.error.message

    def test_release_lets_go_of_waiting_rows_and_stale_running_rows(self, store: Store) -> None:
        store.heartbeat(ME, T0)
        store.enqueue([record(1), record(2), record(3), record(4, owner=OTHER)])
        store.start("t2", ME, T0)
        store.start("t3", ME, T0)
        assert store.release(ME, T0 + 1, keep=["t3"]) == 2
        assert store.fetch("t1").owner is None  # type: ignore[union-attr]
        row = store.fetch("t2")
        assert row is not None
        assert (row.state, row.owner) == ("queued", None)
        row = store.fetch("t3")
        assert row is not None
        assert (row.state, row.owner) == ("running", ME)
        assert store.fetch("t4").owner == OTHER  # type: ignore[union-attr]
        assert ME in {o.owner for o in store.owners()}  # still holds t3
        store.release(ME, T0 + 2)
        assert ME not in {o.owner for o in store.owners()}

    # -- monitoring and retention ----------------------------------------------

    def test_list_filters_and_orders(self, store: Store) -> None:
        store.enqueue([record(n) for n in range(1, 6)])
        for n in (1, 2, 3):
            store.start(f"t{n}", ME, T0)
            store.finish(f"t{n}", ME, "failed" if n == 2 else "succeeded", T0 + n)
        assert [r.id for r in store.list_tasks()] == ["t5", "t4", "t3", "t2", "t1"]
        assert [r.id for r in store.list_tasks(Filter(limit=2, newest_first=False))] == ["t1", "t2"]
        assert [r.id for r in store.list_tasks(Filter(state="succeeded"))] == ["t3", "t1"]
        assert [r.id for r in store.list_tasks(Filter(name="other"))] == []
        assert [r.id for r in store.list_tasks(Filter(finished_before=T0 + 2.5))] == ["t2", "t1"]
        counts = store.counts()
        assert counts["succeeded"] == 2
        assert counts["failed"] == 1
        assert counts["queued"] == 2
        assert counts["interrupted"] == 0

    def test_list_and_count_by_queue_time_and_page(self, store: Store) -> None:
        store.enqueue([record(n, queue="mail" if n % 2 else "default") for n in range(1, 7)])
        for n in (1, 2, 3):
            store.start(f"t{n}", ME, T0)
            store.finish(f"t{n}", ME, "succeeded", T0 + n * 10)
        assert [r.id for r in store.list_tasks(Filter(queue="mail"))] == ["t5", "t3", "t1"]
        assert [r.id for r in store.list_tasks(Filter(created_since=T0 + 2, created_before=T0 + 5))] == [
            "t4",
            "t3",
            "t2",
        ]
        assert [r.id for r in store.list_tasks(Filter(finished_since=T0 + 20))] == ["t3", "t2"]
        assert [r.id for r in store.list_tasks(Filter(offset=1, limit=2))] == ["t5", "t4"]
        assert [r.id for r in store.list_tasks(Filter(offset=5, limit=2))] == ["t1"]
        assert store.count_tasks() == 6
        assert store.count_tasks(Filter(queue="mail", limit=1, offset=2)) == 3  # limit and offset ignored
        assert store.count_tasks(Filter(state="succeeded", finished_since=T0 + 15)) == 2
        assert store.count_tasks(Filter(state="succeeded")) == 3
        assert store.count_tasks(Filter(state="queued", queue="mail")) == 1
        store.start("t4", ME, T0 + 40)
        store.release(ME, T0 + 41, keep=["t4"])  # t5 and t6 become unowned, t4 runs on
        store.enqueue([record(7, queue="mail")])  # owned by ME
        assert store.count_tasks(Filter(state="queued")) == 3  # owned and unowned ones
        assert store.count_tasks(Filter(state="queued"), cap=2) == 2
        assert store.count_tasks(Filter(state="running")) == 1
        assert store.count_tasks(Filter(state="queued", queue="mail")) == 2  # t5, t7
        assert [r.id for r in store.list_tasks(Filter(state="queued"))] == ["t7", "t6", "t5"]
        assert [r.id for r in store.list_tasks(Filter(state="queued", newest_first=False, offset=1, limit=1))] == ["t6"]
        assert [r.id for r in store.list_tasks(Filter(state="queued", queue="mail"))] == ["t7", "t5"]
        assert [r.id for r in store.list_tasks(Filter(state="running"))] == ["t4"]
        assert store.count_tasks(cap=4) == 4
        assert store.count_tasks(Filter(name="other")) == 0

    def test_active_tasks_are_the_waiting_and_running_rows(self, store: Store) -> None:
        store.enqueue([record(1), record(2, owner=None), record(3, state="scheduled"), record(4), record(5)])
        store.start("t1", ME, T0)
        store.start("t4", ME, T0)
        store.finish("t4", ME, "succeeded", T0 + 1)
        store.cancel("t5", "test", T0 + 1)
        active = {r.id: r.state for r in store.active_tasks()}
        assert active == {"t1": "running", "t2": "queued", "t3": "scheduled"}
        assert len(store.active_tasks(limit=2)) == 2

    def test_prune_by_age_then_by_count_keeps_unfinished_rows(self, store: Store) -> None:
        store.enqueue([record(n) for n in range(1, 8)])
        for n in range(1, 6):
            store.start(f"t{n}", ME, T0)
            store.finish(f"t{n}", ME, "succeeded", T0 + n * 10)
        assert store.prune(T0 + 100, older_than=75.0) == 2  # finished at +10, +20
        assert store.prune(T0 + 100, keep=2) == 1  # +30 goes; +40, +50 stay
        assert sorted(r.id for r in store.list_tasks()) == ["t4", "t5", "t6", "t7"]
        assert store.prune(T0 + 100, older_than=0.0, states=("failed",)) == 0
