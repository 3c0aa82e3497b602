"""Database connection hygiene for worker threads.

Django opens one connection per thread and relies on the request cycle to close
stale ones; worker threads have no request cycle. Around every attempt this does
what ``request_started``/``request_finished`` do (``close_old_connections()``:
close connections past ``CONN_MAX_AGE`` or broken), and when a worker thread
exits it closes that thread's connections, so idle retirement and shutdown leave
nothing open on the database server.
"""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections, connections

from ... import _hooks


def _around_attempt(*_: Any) -> None:
    close_old_connections()


def _close_thread_connections(*_: Any) -> None:
    connections.close_all()


_EVENTS = (
    ("before_attempt", _around_attempt),
    ("after_attempt", _around_attempt),
    ("on_thread_exit", _close_thread_connections),
)


def install() -> None:
    """Register the hooks on every runner of the process (idempotent)."""
    for event, fn in _EVENTS:
        _hooks.off(event, fn)
        _hooks.on(event)(fn)


def uninstall() -> None:
    for event, fn in _EVENTS:
        _hooks.off(event, fn)
