"""``task``: Django's ``@task`` decorator that also takes offload's options.

    from offload.contrib.django.tasks import task

    @task(retries=3, backoff=2, timeout=30, priority=5)
    def send_invoice(order_id): ...

Under :class:`~offload.contrib.django.OffloadBackend` the options apply. Under
any other backend (Django's ImmediateBackend in a test settings file, a Celery
backend later) they are dropped, so the same code runs there, and
``manage.py check`` warns (``offload.W003``) that they are ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .backend import POLICY_FIELDS, OffloadTask

try:
    from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
    from django.tasks import task as framework_task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
    from django_tasks import task as framework_task

_ignored: list[tuple[str, str, tuple[str, ...]]] = []
_ignored_lock = threading.Lock()


def ignored_options() -> list[tuple[str, str, tuple[str, ...]]]:
    """(task path, backend alias, option names) dropped because the backend is not offload's."""
    with _ignored_lock:
        return list(_ignored)


def task(
    function: Callable[..., Any] | None = None,
    *,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    **options: Any,
) -> Any:
    """``django.tasks.task`` plus offload's ``retries``, ``retry_on``, ``backoff``,
    ``max_backoff``, ``jitter`` and ``timeout``."""
    policy = {name: options.pop(name) for name in POLICY_FIELDS if name in options}

    def decorate(func: Callable[..., Any]) -> Any:
        task_class = task_backends[backend].task_class
        if isinstance(task_class, type) and issubclass(task_class, OffloadTask):
            return framework_task(func, backend=backend, **options, **policy)
        if policy:
            with _ignored_lock:
                _ignored.append((f"{func.__module__}.{func.__qualname__}", backend, tuple(sorted(policy))))
        return framework_task(func, backend=backend, **options)

    return decorate(function) if function is not None else decorate
