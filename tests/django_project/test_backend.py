"""``OffloadBackend`` under Django's Tasks framework (``django.tasks``, or the
``django-tasks`` backport on Django 5.2)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

import offload
from offload.contrib.django.backend import OffloadBackend, OffloadTask, parse_options
from offload.contrib.django.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)

from ..conftest import WAIT
from .shop.models import Order
from .shop.tasks import add, create_order, flaky_webhook, on_another_backend

pytestmark = pytest.mark.django_db(transaction=True)


def wait_finished(result: Any) -> Any:
    """Block until the TaskResult is finished (its handle is the runner's task of the same id)."""
    from offload.contrib.django import backend

    state = backend._states[result.backend]
    handle = state.runner.get(result.id)
    assert handle is not None
    assert handle.wait(WAIT)
    return result


@pytest.fixture
def signals() -> Iterator[dict[str, list[tuple[str, str]]]]:
    received: dict[str, list[tuple[str, str]]] = {"enqueued": [], "started": [], "finished": []}
    lock = threading.Lock()

    def receiver(name: str) -> Any:
        def record(sender: Any, task_result: Any, **kwargs: Any) -> None:
            with lock:
                received[name].append((task_result.id, str(task_result.status)))

        return record

    handlers = {"enqueued": receiver("enqueued"), "started": receiver("started"), "finished": receiver("finished")}
    task_enqueued.connect(handlers["enqueued"])
    task_started.connect(handlers["started"])
    task_finished.connect(handlers["finished"])
    yield received
    task_enqueued.disconnect(handlers["enqueued"])
    task_started.disconnect(handlers["started"])
    task_finished.disconnect(handlers["finished"])


def test_the_backend_declares_what_it_supports() -> None:
    assert isinstance(add, OffloadTask)
    backend = add.get_backend()
    assert isinstance(backend, OffloadBackend)
    assert backend.supports_defer and backend.supports_async_task and backend.supports_priority
    assert backend.supports_get_result is False  # same process only without a journal


def test_a_task_runs_and_its_result_is_filled_in(signals: dict[str, list[tuple[str, str]]]) -> None:
    result = add.enqueue(2, 3)
    assert result.status in (TaskResultStatus.READY, TaskResultStatus.RUNNING, TaskResultStatus.SUCCESSFUL)
    assert result.enqueued_at is not None
    wait_finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.started_at is not None and result.finished_at is not None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert len(result.worker_ids) == 1 and result.errors == []
    assert add.get_result(result.id) is result
    assert signals["enqueued"] == [(result.id, "READY")]
    assert signals["started"] == [(result.id, "RUNNING")]
    assert signals["finished"] == [(result.id, "SUCCESSFUL")]


def test_retries_are_visible_in_the_task_result(signals: dict[str, list[tuple[str, str]]]) -> None:
    result = flaky_webhook.enqueue("order-1", fail_times=2)
    wait_finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"key": "order-1", "attempt": 3}  # the context saw each attempt
    assert len(result.worker_ids) == 3 and result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert "503 from the webhook (attempt 1)" in result.errors[0].traceback
    assert result.errors[0].exception_class is ConnectionError
    assert [s for _, s in signals["started"]] == ["RUNNING"] * 3
    assert signals["finished"] == [(result.id, "SUCCESSFUL")]


def test_a_task_that_runs_out_of_retries_fails_with_every_error() -> None:
    result = flaky_webhook.enqueue("order-2", fail_times=10)
    wait_finished(result)
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 4 and len(result.worker_ids) == 4  # retries=3
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018 - the property raises


def test_a_task_uses_the_orm_from_a_worker_thread() -> None:
    result = create_order.using(priority=1).enqueue("x@example.com")
    wait_finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert Order.objects.get(email="x@example.com").pk == result.return_value


def test_get_result_of_an_unknown_id_raises() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        add.get_backend().get_result("no-such-id")


def test_run_after_in_the_future_schedules_and_in_the_past_runs_now() -> None:
    later = add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    from offload.contrib.django import backend

    handle = backend._states["default"].runner.get(later.id)
    assert handle is not None and handle.state is offload.State.SCHEDULED
    assert handle.cancel()
    wait_finished(later)
    assert later.status == TaskResultStatus.FAILED  # cancelled before it ran: not READY forever
    assert later.errors[-1].exception_class_path == "offload.TaskCancelledError"
    now = add.using(run_after=timezone.now() - timedelta(minutes=1)).enqueue(2, 2)
    assert wait_finished(now).return_value == 4


def test_an_enqueue_rolled_back_with_its_transaction_fails_the_result() -> None:
    results = []

    def checkout() -> None:
        with transaction.atomic():
            results.append(add.enqueue(3, 4))
            assert results[0].status == TaskResultStatus.READY
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        checkout()
    (result,) = results
    assert result.status == TaskResultStatus.FAILED
    assert "rolled back" in result.errors[-1].traceback


def test_a_model_instance_argument_is_refused_with_the_fix() -> None:
    order = Order.objects.create(email="m@example.com")
    with pytest.raises(offload.PayloadError, match=r"argument args\[1\] \(Order\).*primary key"):
        add.enqueue(1, order)
    with pytest.raises(TypeError):  # PayloadError is a TypeError too, as the framework raises
        add.enqueue(1, order)


def test_invalid_offload_options_on_a_task_fail_at_declaration() -> None:
    from offload.contrib.django.tasks import task

    with pytest.raises(InvalidTask, match="retries"):
        task(retries=-1)(module_level_job)
    with pytest.raises(InvalidTask, match="timeout"):
        task(timeout=-5)(module_level_job)


def module_level_job() -> None:
    """Not decorated here: the tests above decorate it with bad options."""


def test_options_of_a_task_on_another_backend_are_dropped_and_reported() -> None:
    from offload.contrib.django.checks import check_settings

    assert on_another_backend.enqueue(21).return_value == 42  # ImmediateBackend ran it inline
    warnings = [m for m in check_settings() if m.id == "offload.W003"]
    assert len(warnings) == 1
    assert "on_another_backend" in warnings[0].msg and "retries, timeout" in warnings[0].msg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"WORKERS": 0}, "workers"),
        ({"RETRIES": -1}, "retries"),
        ({"TIMEOUT": "soon"}, "timeout"),
        ({"RESULTS": -5}, "RESULTS"),
        ({"WROKERS": 4}, "WROKERS"),
        ("8 workers", "must be a dict"),
    ],
)
def test_bad_options_are_named_by_the_check_and_at_enqueue(options: object, message: str) -> None:
    with pytest.raises(offload.ConfigurationError, match=message):
        parse_options("broken", options)
    backend = OffloadBackend("broken", {"OPTIONS": options})
    (error,) = backend.check()
    assert error.id == "offload.E101" and message in error.msg and "TASKS['broken']" in error.msg
    with pytest.raises(offload.ConfigurationError, match=message):
        backend._state()


def test_aenqueue_from_async_code() -> None:
    async def view() -> Any:
        return await add.aenqueue(5, 6)

    result = asyncio.run(view())
    assert wait_finished(result).return_value == 11


def test_an_async_task_runs_on_the_pool() -> None:
    from .shop.tasks import async_double

    result = wait_finished(async_double.enqueue(21))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


def test_the_frameworks_own_task_decorator_takes_offloads_options() -> None:
    from .shop.tasks import frameworks_decorator_task

    assert isinstance(frameworks_decorator_task, OffloadTask) and frameworks_decorator_task.retries == 2
    result = wait_finished(frameworks_decorator_task.enqueue(4))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 40
    assert result.attempts == 3 and len(result.errors) == 2
