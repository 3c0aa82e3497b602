"""Tasks of the test shop, declared both ways: offload's API and Django's Tasks framework."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import connection

import offload
from offload.contrib.django.tasks import framework_task
from offload.contrib.django.tasks import task as django_task

from .models import Order

seen: dict[str, Any] = {}
seen_lock = threading.Lock()


@offload.task(name="shop.mark_paid")
def mark_paid(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)  # must see the committed row
    order.status = "paid"
    order.save(update_fields=["status"])
    return order.email


@offload.task(name="shop.count_connections")
def count_connections(order_id: int) -> int:
    """Touches the ORM, then reports how many connections the test database has right now."""
    Order.objects.filter(pk=order_id).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        (count,) = cursor.fetchone()
    return int(count)


_failures: dict[str, int] = {}


@django_task(retries=3, retry_on=(ConnectionError,), takes_context=True)
def flaky_webhook(context: Any, key: str, fail_times: int) -> dict[str, Any]:
    with seen_lock:
        _failures.setdefault(key, fail_times)
        if _failures[key] > 0:
            _failures[key] -= 1
            raise ConnectionError(f"503 from the webhook (attempt {context.attempt})")
    return {"key": key, "attempt": context.attempt}


@django_task(priority=5)
def add(a: int, b: int) -> int:
    return a + b


@django_task
def create_order(email: str) -> int:
    return int(Order.objects.create(email=email).pk)


@django_task(backend="immediate", retries=2, timeout=5)
def on_another_backend(x: int) -> int:
    return x * 2


@offload.task(name="shop.record_order")
def record_order(email: str) -> None:
    time.sleep(0.02)  # sleep-ok: the task's work, so that tasks are still queued when the server stops
    Order.objects.create(email=email)


@django_task
async def async_double(x: int) -> int:
    return x * 2


_plain_attempts: list[int] = []


# Django's own @task (the backport's on Django 5.2): the backend's task class takes offload's options.
@framework_task(retries=2, backoff=0.01, retry_on=(ConnectionError,))
def frameworks_decorator_task(n: int) -> int:
    _plain_attempts.append(n)
    if len(_plain_attempts) < 3:
        raise ConnectionError("not yet")
    return n * 10
