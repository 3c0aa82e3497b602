"""Enqueue inside ``transaction.atomic()`` waits for the commit, on PostgreSQL and SQLite."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import transaction

import offload
from offload import State

from ..conftest import WAIT
from .shop.models import Order
from .shop.tasks import mark_paid

DATABASES = ["default", "sqlite"]
pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)


@pytest.fixture(params=DATABASES)
def using(request: pytest.FixtureRequest) -> str:
    """Run each test on PostgreSQL and on SQLite, with the on-commit deferral on that database."""
    from offload.contrib.django import transactions

    transactions.install(request.param)
    return str(request.param)


def test_a_task_enqueued_in_a_transaction_starts_after_the_commit_and_sees_the_row(using: str) -> None:
    with transaction.atomic(using=using):
        order = Order.objects.using(using).create(email="ada@example.com")
        handle = mark_paid.delay(order.pk) if using == "default" else offload.submit(_mark_paid_on, using, order.pk)
        assert handle.state is State.PENDING
        assert offload.stats().pending == 1
    assert handle.result(timeout=WAIT) == "ada@example.com"
    assert Order.objects.using(using).get(pk=order.pk).status == "paid"
    assert offload.stats().pending == 0


def _mark_paid_on(using: str, order_id: int) -> str:
    order = Order.objects.using(using).get(pk=order_id)
    order.status = "paid"
    order.save(update_fields=["status"])
    return order.email


def test_a_rolled_back_transaction_cancels_its_tasks_logged_and_counted(
    using: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran = threading.Event()
    handles: list[offload.TaskHandle] = []

    def place_order() -> None:
        with transaction.atomic(using=using):
            Order.objects.using(using).create(email="bob@example.com")
            handles.append(offload.submit(ran.set))
            assert handles[0].state is State.PENDING
            raise RuntimeError("payment declined")

    with caplog.at_level(logging.INFO, logger="offload"), pytest.raises(RuntimeError, match="payment declined"):
        place_order()
    (handle,) = handles
    assert handle.state is State.CANCELLED
    assert handle.cancel_reason == "its database transaction rolled back"
    assert f"(id {handle.id}) discarded: its database transaction rolled back" in caplog.text
    assert offload.stats().cancelled == 1 and offload.stats().pending == 0
    assert not ran.is_set() and not Order.objects.using(using).exists()


def test_only_the_tasks_of_a_rolled_back_savepoint_are_cancelled(using: str) -> None:
    with transaction.atomic(using=using):
        kept = offload.submit(int, "1")
        try:
            with transaction.atomic(using=using):
                dropped = offload.submit(int, "2")
                raise ValueError("inner block fails")
        except ValueError:
            pass
        assert dropped.state is State.CANCELLED
        assert kept.state is State.PENDING
    assert kept.result(timeout=WAIT) == 1
    assert dropped.cancelled()


def test_outside_a_transaction_nothing_waits(using: str) -> None:
    assert offload.submit(int, "5").result(timeout=WAIT) == 5


def test_a_task_enqueued_in_a_transaction_of_another_database_is_not_deferred(using: str) -> None:
    other = "sqlite" if using == "default" else "default"
    with transaction.atomic(using=other):
        handle = offload.submit(int, "6")
        assert handle.result(timeout=WAIT) == 6  # ON_COMMIT_DATABASE is `using`, not `other`


def test_offload_thread_is_deferred_too(using: str) -> None:
    done = threading.Event()
    with transaction.atomic(using=using):
        thread = offload.Thread(target=done.set)
        thread.start()
        assert thread.handle is not None and thread.handle.state is State.PENDING
    thread.join(WAIT)
    assert done.is_set()


def test_with_on_commit_off_the_task_is_queued_at_once(using: str, settings: object) -> None:
    from offload.contrib.django.apps import configure_from_settings

    settings.OFFLOAD = {"WORKERS": 4, "ON_COMMIT": False}  # type: ignore[attr-defined]
    configure_from_settings()
    gate = threading.Event()
    with transaction.atomic(using=using):
        handle = offload.submit(gate.wait, WAIT)
        assert handle.state in (State.QUEUED, State.RUNNING)
        gate.set()
    assert handle.result(timeout=WAIT) is True
