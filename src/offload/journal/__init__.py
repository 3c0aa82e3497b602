"""The durable journal: a Store contract and its two implementations.

- :class:`Store` — what a runner needs from the place its tasks are kept.
- :class:`SQLiteJournal` — the durable one: an SQLite file (stdlib ``sqlite3``).
- :class:`MemoryStore` — the same contract in a dict (tests, reference behaviour).

Use it through the runner: ``offload.configure(journal="offload.sqlite3")`` or
``offload.Runner(journal=...)``; see docs/journal.md.
"""

from ._memory import MemoryStore
from ._owner import is_alive, owner_id
from ._schema import SCHEMA_VERSION
from ._sqlite import SQLiteJournal
from ._store import (
    DECODE_ERROR,
    FINISHED,
    MAX_INTERRUPTED,
    PROCESS_DIED,
    STATES,
    UNKNOWN_TASK,
    WAITING,
    WORKER_LOST,
    Filter,
    Owner,
    Recovery,
    Store,
    TaskRecord,
)

__all__ = [
    "DECODE_ERROR",
    "FINISHED",
    "MAX_INTERRUPTED",
    "PROCESS_DIED",
    "SCHEMA_VERSION",
    "STATES",
    "UNKNOWN_TASK",
    "WAITING",
    "WORKER_LOST",
    "Filter",
    "MemoryStore",
    "Owner",
    "Recovery",
    "SQLiteJournal",
    "Store",
    "TaskRecord",
    "is_alive",
    "owner_id",
]
