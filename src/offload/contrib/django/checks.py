"""System checks (``manage.py check``) for the offload app.

- ``offload.E001``: ``OFFLOAD['ON_COMMIT_DATABASE']`` is not in ``DATABASES``.
- ``offload.W001``: persistent connections (``CONN_MAX_AGE`` not 0) with
  ``CLOSE_CONNECTIONS`` off: every worker thread keeps a connection open.
- ``offload.W002``: SQLite as a Django database without WAL: background threads
  writing while requests write get ``database is locked``.
- ``offload.W003``: tasks declared with offload options through
  :func:`offload.contrib.django.tasks.task` on a backend that is not offload's:
  the options are ignored there.
- ``offload.E002``: ``OFFLOAD['JOURNAL']`` cannot be written (its directory or file).
- ``offload.E101`` (from the backend): invalid ``TASKS[...]['OPTIONS']``.
- ``offload.E102`` (from the backend): ``TASKS[...]['OPTIONS']['JOURNAL']`` cannot be written.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core import checks

from ..._errors import ConfigurationError
from . import conf

_registered = False


def register() -> None:
    global _registered
    if not _registered:
        checks.register(check_settings, "offload")
        _registered = True


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return check(getattr(settings, "OFFLOAD", None), settings.DATABASES)


def check(offload_settings: object, databases: dict[str, dict[str, Any]]) -> list[checks.CheckMessage]:
    """The messages for these ``OFFLOAD`` and ``DATABASES`` values."""
    messages: list[checks.CheckMessage] = []
    try:
        options = conf.load(offload_settings)
    except ConfigurationError as exc:  # pragma: no cover - ready() refuses these first
        return [checks.Error(str(exc), id="offload.E000", obj="settings.OFFLOAD")]
    journal = options.runner_options.get("journal")
    problem = journal_problem(journal) if isinstance(journal, str) else None
    if problem is not None:
        messages.append(checks.Error(problem, id="offload.E002", obj="settings.OFFLOAD['JOURNAL']"))
    if options.on_commit and options.on_commit_database not in databases:
        messages.append(
            checks.Error(
                f"OFFLOAD['ON_COMMIT_DATABASE'] is {options.on_commit_database!r}, which is not in DATABASES "
                f"({', '.join(databases)})",
                id="offload.E001",
                obj="settings.OFFLOAD",
            )
        )
    for alias, database in databases.items():
        if database.get("CONN_MAX_AGE", 0) != 0 and not options.close_connections:
            messages.append(
                checks.Warning(
                    f"DATABASES[{alias!r}] keeps connections open (CONN_MAX_AGE={database.get('CONN_MAX_AGE')!r}) "
                    "and OFFLOAD['CLOSE_CONNECTIONS'] is False: every worker thread holds a connection for its "
                    "whole life and broken ones are never replaced",
                    hint="Leave OFFLOAD['CLOSE_CONNECTIONS'] at True, or set CONN_MAX_AGE to 0.",
                    id="offload.W001",
                    obj=f"DATABASES[{alias!r}]",
                )
            )
        if database.get("ENGINE", "").endswith("sqlite3") and not _uses_wal(database):
            messages.append(
                checks.Warning(
                    f"DATABASES[{alias!r}] is SQLite without WAL: a background task writing while a request "
                    "writes fails with 'database is locked'",
                    hint=(
                        'Add "init_command": "PRAGMA journal_mode=WAL;" (and a "timeout") to its OPTIONS '
                        "(Django 5.1+), or use PostgreSQL."
                    ),
                    id="offload.W002",
                    obj=f"DATABASES[{alias!r}]",
                )
            )
    from .tasks import ignored_options

    for module_path, backend, names in ignored_options():
        messages.append(
            checks.Warning(
                f"task {module_path} declares offload option(s) {', '.join(names)}, but its backend "
                f"{backend!r} is not offload's: they are ignored",
                hint="Use offload.contrib.django.OffloadBackend for this alias, or drop the options.",
                id="offload.W003",
                obj=module_path,
            )
        )
    return messages


def journal_problem(path: str) -> str | None:
    """Why a journal could not be written at ``path`` (it needs its directory too, for WAL files)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"journal {path!r}: directory {directory!r} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"journal {path!r}: directory {directory!r} is not writable (SQLite creates -wal and -shm files there)"
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return f"journal {path!r}: the file is not readable and writable by this user"
    return None


def _uses_wal(database: dict[str, Any]) -> bool:
    init = str(database.get("OPTIONS", {}).get("init_command", ""))
    return "journal_mode=wal" in init.replace(" ", "").lower()
