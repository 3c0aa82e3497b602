"""``offload journal repair``: move a damaged journal aside and salvage its readable rows."""

from __future__ import annotations

import os
import sqlite3
import time

from ._intake import intake_dir, logs
from ._replay import replay
from ._sqlite import SQLiteJournal

_COLUMNS = (
    "id, name, queue, priority, state, attempts, interrupted, at_most_once, payload, result, error_type, "
    "error_message, error_traceback, reason, owner, created_at, run_at, started_at, finished_at"
)


def move_aside(path: str) -> str:
    """Rename the journal (and its -wal/-shm files and intake directory) to ``PATH.corrupt-<time>``;
    return the new name."""
    target = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    for suffix in ("-wal", "-shm", "-intake", ""):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


def _rows(old: sqlite3.Connection) -> tuple[list[tuple[object, ...]], int]:
    """Every readable row; unreadable ranges are skipped row by row."""
    try:
        (top,) = old.execute("SELECT max(seq) FROM tasks").fetchone()
    except sqlite3.DatabaseError:
        top = 1_000_000
    rows: list[tuple[object, ...]] = []
    lost = 0
    step = 500
    for start in range(0, (top or 0) + 1, step):
        try:
            rows += old.execute(f"SELECT {_COLUMNS} FROM tasks WHERE seq BETWEEN ? AND ?", (start, start + step - 1))
        except sqlite3.DatabaseError:
            for seq in range(start, start + step):
                try:
                    rows += old.execute(f"SELECT {_COLUMNS} FROM tasks WHERE seq = ?", (seq,))
                except sqlite3.DatabaseError:
                    lost += 1
    return rows, lost


def _positions(old: sqlite3.Connection) -> dict[str, int]:
    """How far each intake log was applied, as far as the damaged file still says."""
    try:
        return {str(log): int(applied) for log, applied in old.execute("SELECT log, applied FROM intake")}
    except sqlite3.DatabaseError:
        return {}


def repair(path: str) -> tuple[str, int, int]:
    """Move ``path`` aside, copy its readable rows into a new journal at ``path``.

    The records the intake logs held past their applied positions are applied to
    the new journal too (what processes had accepted and the damaged file did not
    have yet). Returns (where the damaged file went, rows copied, rows that could
    not be read). Rows that were running are made claimable again (their owners
    are gone).
    """
    aside = move_aside(path)
    rows: list[tuple[object, ...]] = []
    lost = 0
    positions: dict[str, int] = {}
    try:
        old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        try:
            rows, lost = _rows(old)
            positions = _positions(old)
        finally:
            old.close()
    except sqlite3.DatabaseError:
        lost = -1  # not even the table could be read
    intake = logs(intake_dir(aside))
    fresh = SQLiteJournal(path)
    try:
        marks = ",".join("?" * len(_COLUMNS.split(",")))

        def copy(conn: sqlite3.Connection) -> int:
            sql = f"INSERT OR IGNORE INTO tasks ({_COLUMNS}) VALUES ({marks})"
            copied = conn.executemany(sql, rows).rowcount
            for writer in set(intake.values()):
                names = [name for name, owner in intake.items() if owner == writer]
                replay(conn, intake_dir(aside), names, writer, fresh._lost_record, after=positions)
            conn.execute("DELETE FROM intake")  # those logs stay with the damaged file
            conn.execute("UPDATE tasks SET owner = NULL, state = 'queued' WHERE state = 'running'")
            conn.execute("UPDATE tasks SET owner = NULL")
            return int(copied)

        copied: int = fresh._write([copy])[0]
    finally:
        fresh.close()
    return aside, copied, lost
