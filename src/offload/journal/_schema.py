"""The journal's schema, its version and the forward migrations.

The version is SQLite's ``PRAGMA user_version``. Opening a journal runs every
migration from its version up to :data:`SCHEMA_VERSION` in one transaction;
a journal written by a newer offload (a higher version) is refused, because
this code cannot know what the newer columns mean.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .._errors import JournalError

# Each entry migrates from version i to i + 1 (index 0: an empty file to version 1).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE tasks (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority INTEGER NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0,
            at_most_once INTEGER NOT NULL DEFAULT 0,
            payload TEXT NOT NULL,
            result TEXT,
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT,
            reason TEXT,
            owner TEXT,
            created_at REAL NOT NULL,
            run_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL
        )
        """,
        "CREATE TABLE owners (owner TEXT PRIMARY KEY, heartbeat REAL NOT NULL)",
        "CREATE INDEX tasks_owner ON tasks (owner) WHERE owner IS NOT NULL",
        """
        CREATE INDEX tasks_claimable ON tasks (priority DESC, seq)
        WHERE owner IS NULL AND state IN ('queued', 'scheduled', 'retrying')
        """,
    ),
    # 2: monitoring and retention read finished rows by state and age.
    ("CREATE INDEX tasks_finished ON tasks (state, finished_at) WHERE finished_at IS NOT NULL",),
    # 3: how far each intake log is applied (see _writer.py).
    ("CREATE TABLE intake (log TEXT PRIMARY KEY, owner TEXT NOT NULL, applied INTEGER NOT NULL)",),
)

#: The schema version this offload writes.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(
    conn: sqlite3.Connection,
    path: str,
    target: int = SCHEMA_VERSION,
    begin: Callable[[sqlite3.Connection], None] | None = None,
) -> int:
    """Bring the schema up to ``target`` inside one write transaction; return the version found.

    A journal already at ``target`` is only read: opening it takes no write lock.
    ``begin`` starts the write transaction (default: a plain ``BEGIN IMMEDIATE``).

    Raises:
        JournalError: the file was written by a newer schema.
    """
    found = _version(conn, path)
    if found >= target:
        return found
    if begin is None:
        conn.execute("BEGIN IMMEDIATE")
    else:
        begin(conn)
    try:
        found = _version(conn, path)  # another process may have migrated meanwhile
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if target > found:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
        return found
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection, path: str) -> int:
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {found}, newer than the {SCHEMA_VERSION} this offload "
            "understands; upgrade offload in this environment (or point it at another journal file)"
        )
    return found
