"""offload for Django.

Two ways in, usable together:

- the app: ``INSTALLED_APPS += ["offload.contrib.django"]`` and an ``OFFLOAD``
  settings dict; tasks use offload's own API (``@offload.task``, ``.delay()``,
  ``offload.Thread``), with database connections kept clean around every attempt
  and enqueue inside ``transaction.atomic()`` deferred to the commit;
- the backend for Django's Tasks framework (``django.tasks`` on Django 6.0+, the
  ``django-tasks`` backport before): ``"BACKEND": "offload.contrib.django.OffloadBackend"``
  in ``TASKS``.

See docs/django.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OffloadBackend"]


def __getattr__(name: str) -> Any:
    # Lazy: the app must not import the Tasks framework (it may not be installed).
    if name == "OffloadBackend":
        from .backend import OffloadBackend

        return OffloadBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
