"""Connection hygiene on real PostgreSQL: worker threads never hold more connections
than there are workers, and give every one back (``pg_stat_activity``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connection, connections

import offload

from ..conftest import WAIT
from .shop.models import Order
from .shop.tasks import count_connections

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 8


def settled_connections(expected: int, timeout: float = WAIT) -> int:
    """The count once it equals ``expected``, or the last one seen after ``timeout``.

    PostgreSQL ends a backend process shortly *after* its client closed the socket,
    so pg_stat_activity lags behind a close: this is waiting on another process's
    teardown, not synchronising threads of ours.
    """
    deadline = time.monotonic() + timeout
    while (count := open_connections()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)  # sleep-ok: PostgreSQL ends backends after the client closes; no event to wait on
    return count


def open_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        (count,) = cursor.fetchone()
    return int(count)


@pytest.fixture
def conn_max_age(request: pytest.FixtureRequest) -> Iterator[object]:
    """Worker threads' connections use this CONN_MAX_AGE (new connection objects read it)."""
    database = connections.settings["default"]
    previous = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = request.param
    yield request.param
    database["CONN_MAX_AGE"] = previous


@pytest.mark.parametrize(
    ("conn_max_age", "tasks"),
    [pytest.param(0, 1_000, id="CONN_MAX_AGE=0"), pytest.param(None, 10_000, id="persistent")],
    indirect=["conn_max_age"],
)
def test_orm_tasks_hold_at_most_one_connection_per_worker_and_release_them(conn_max_age: object, tasks: int) -> None:
    order = Order.objects.create(email="pool@example.com")
    baseline = open_connections()  # this test's own connection
    offload.configure(workers=WORKERS, queue_size=tasks)
    handles = [count_connections.delay(order.pk) for _ in range(tasks)]
    seen = [handle.result(timeout=WAIT * 6) for handle in handles]
    assert offload.stats().threads <= WORKERS
    if conn_max_age is None:
        # Persistent: each thread keeps one connection, so every count is exact (no churn).
        assert max(seen) <= baseline + WORKERS, f"up to {max(seen)} connections with {WORKERS} workers"
    else:
        # Closed after each attempt; the counts also include backends still exiting.
        assert offload.default_runner().join(timeout=WAIT)
        assert settled_connections(baseline) == baseline
    offload.shutdown(wait=True, timeout=WAIT)  # threads exit: on_thread_exit closes theirs
    assert settled_connections(baseline) == baseline


def test_without_hygiene_a_persistent_connection_outlives_its_thread_attempts(settings: object) -> None:
    """The control: with CLOSE_CONNECTIONS off and persistent connections, attempts leave theirs open."""
    from offload.contrib.django import connections as hygiene
    from offload.contrib.django.apps import configure_from_settings

    settings.OFFLOAD = {"WORKERS": 2, "CLOSE_CONNECTIONS": False}  # type: ignore[attr-defined]
    configure_from_settings()
    database = connections.settings["default"]
    previous, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], None
    try:
        baseline = open_connections()
        assert count_connections.delay(Order.objects.create(email="c@example.com").pk).result(timeout=WAIT)
        assert offload.default_runner().join(timeout=WAIT)
        assert settled_connections(baseline + 1) == baseline + 1  # the worker's connection is still open
    finally:
        database["CONN_MAX_AGE"] = previous
        hygiene.install()  # so the exiting worker closes what it kept open
        offload.shutdown(wait=True, timeout=WAIT)
    assert settled_connections(baseline) == baseline
