"""What dead processes left in their intake logs: found, applied once, then removed.

A process that dies leaves its intake logs (see :mod:`._writer`) with records its
writer had not applied yet. They are applied by the recovery of any live process
(every second), by any process that opens the journal, and by ``offload journal
repair``: the records past each log's applied position, in the order the dead
process accepted them, in the same transaction that records the new positions.
The segments are removed after that commit, and the positions after that: a
crash in between leaves positions without segments (deleted by the next
recovery), never segments without their position, which would be applied twice.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._errors import JournalError
from .._log import runner_log
from ._apply import ENQUEUE, FINISH, START_MARK, apply, set_based
from ._intake import logs, mailbox_path, read_records, remove_log, unlink_quietly
from ._owner import is_alive, owner_id
from ._writer import UPSERT_POSITION, live_logs

if TYPE_CHECKING:
    from ._sqlite import SQLiteJournal

#: Records applied per statement group when replaying a dead process's logs.
REPLAY_CHUNK = 5000


def dead_logs(found: dict[str, str], is_dead: Callable[[str], bool]) -> dict[str, str]:
    """Of the logs ``found`` (name -> owner id, see ``_intake.logs``), those nobody appends to any more."""
    me = owner_id()
    return {name: owner for name, owner in found.items() if name not in live_logs and (owner == me or is_dead(owner))}


def replay(
    conn: sqlite3.Connection,
    directory: str,
    names: list[str],
    owner: str,
    lost: Callable[[str], None],
    after: dict[str, int] | None = None,
) -> int:
    """Apply the records that the logs ``names`` of one dead process hold past their applied
    positions, in the order that process accepted them (inside the caller's transaction).

    ``after`` gives the positions instead of the ``intake`` table (a repair reads them from
    the damaged file). Returns the records applied. The segments are the caller's to
    remove after the commit.
    """
    records: list[tuple[int, str, str]] = []
    positions = {}
    for name in names:
        if after is not None:
            position = after.get(name, 0)
        else:
            row = conn.execute("SELECT applied FROM intake WHERE log = ?", (name,)).fetchone()
            position = int(row[0]) if row else 0
        for end, data in read_records(directory, name, position):
            position = end
            try:
                records.append(_parse(data))
            except ValueError as exc:  # intact (its CRC holds) but not written by offload
                lost(f"a record of intake log {name} in {directory} cannot be read ({exc}): {data[:80]!r}")
        positions[name] = position
    records.sort()
    many = set_based(conn)
    for start in range(0, len(records), REPLAY_CHUNK):
        apply(conn, [(kind, text) for _, kind, text in records[start : start + REPLAY_CHUNK]], lost, many=many)
    for name, position in positions.items():
        conn.execute(UPSERT_POSITION, (name, owner, position))
    return len(records)


def _parse(data: bytes) -> tuple[int, str, str]:
    """(sequence number, kind, JSON text) of a record; ValueError if it is not one offload wrote."""
    bar = data.index(b"|")
    kind, text = chr(data[0]), data[bar + 1 :].decode("ascii")
    if kind not in (ENQUEUE, START_MARK, FINISH) or not isinstance(json.loads(text), list):
        raise ValueError(f"not an intake record of kind {kind!r}")
    return int(data[1:bar]), kind, text


def absorb(journal: SQLiteJournal) -> None:
    """Apply what stopped processes of this host left in their logs (when a journal is opened)."""
    found = logs(journal._intake_dir)
    dead_log = dead_logs(found, lambda other: is_alive(other) is False) if found else {}
    if not dead_log:
        return
    try:
        journal._write([functools.partial(replay_dead, journal, dead_log=dead_log, stale=())])
    except JournalError as exc:
        runner_log.warning("journal %s: the intake logs of stopped processes in %s cannot be applied yet: %s",
                           journal.path, journal._intake_dir, exc)  # fmt: skip
        return
    forget(journal, dead_log)


def stale_positions(journal: SQLiteJournal, found: dict[str, str]) -> list[str]:
    """Applied positions of logs whose segments are gone (removed after their last apply)."""
    return [name for (name,) in journal._read("SELECT log FROM intake") if name not in found]


def replay_dead(journal: SQLiteJournal, conn: sqlite3.Connection, dead_log: dict[str, str],
                stale: Sequence[str]) -> None:  # fmt: skip
    """Inside a transaction: delete stale positions, apply the dead logs, process by process."""
    for name in stale:
        conn.execute("DELETE FROM intake WHERE log = ?", (name,))
    by_process: dict[str, list[str]] = {}
    for name, writer in dead_log.items():
        by_process.setdefault(writer, []).append(name)
    for writer, names in by_process.items():
        applied = replay(conn, journal._intake_dir, names, writer, journal._lost_record)
        if applied:
            runner_log.info("journal %s: applied %d write(s) that stopped process %s had accepted",
                            journal.path, applied, writer)  # fmt: skip


def forget(journal: SQLiteJournal, dead_log: dict[str, str]) -> None:
    """Remove replayed logs (after the commit that recorded their positions), then their positions,
    and the mailboxes of their processes that are gone for sure."""
    if not dead_log:
        return
    names = list(dead_log)
    for name in names:
        remove_log(journal._intake_dir, name)
    for writer in set(dead_log.values()):
        if is_alive(writer) is False:
            unlink_quietly(mailbox_path(journal._intake_dir, writer))
    try:
        journal._write([("DELETE FROM intake WHERE log = ?", (name,)) for name in names])
    except JournalError:
        pass  # removed by the next recovery
