"""Enqueue inside ``transaction.atomic()`` waits for the commit.

A task enqueued in a transaction that has not committed may run before the rows
it needs are visible, or run for rows that a rollback then removes. With the
``ON_COMMIT`` setting (the default) a task enqueued while the configured
database is in an atomic block is ``PENDING``: queued by ``on_commit`` when the
outermost block commits, cancelled (logged at INFO, counted in ``cancelled``)
when its block rolls back. Outside an atomic block nothing changes.

Django has no rollback callback. A rollback discards the ``on_commit``
callbacks registered inside the rolled-back block, so the callback object is
freed at that moment (CPython frees it as its last reference goes); a
``weakref.finalize`` on it discards the task unless the callback ran.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from django.db import transaction

from ... import _deferral
from ..._handle import TaskHandle


class _OnCommit:
    __slots__ = ("__weakref__", "admit", "ran")

    def __init__(self, admit: Callable[[], None]) -> None:
        self.admit = admit
        self.ran = [False]  # shared with the finalizer, which must not hold self

    def __call__(self) -> None:
        self.ran[0] = True
        self.admit()


def _discard_unless_ran(ran: list[bool], discard: Callable[[str], None]) -> None:
    if not ran[0]:
        discard("its database transaction rolled back")


class DeferToCommit:
    """The deferral for ``offload._deferral``: PENDING while ``using`` is in an atomic block."""

    def __init__(self, using: str) -> None:
        self.using = using

    def __call__(self, handle: TaskHandle, admit: Callable[[], None], discard: Callable[[str], None]) -> bool:
        if not transaction.get_connection(self.using).in_atomic_block:
            return False
        callback = _OnCommit(admit)
        weakref.finalize(callback, _discard_unless_ran, callback.ran, discard)
        transaction.on_commit(callback, using=self.using)
        return True


def install(using: str) -> None:
    _deferral.install(DeferToCommit(using))


def uninstall() -> None:
    if isinstance(_deferral.current, DeferToCommit):
        _deferral.install(None)
