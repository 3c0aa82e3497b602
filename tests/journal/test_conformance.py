"""Both stores pass the public conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import offload
from offload.journal import MemoryStore, SQLiteJournal
from offload.testing.journal import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


class TestRunnerHistory(StoreConformance):
    """A runner's own in-memory history is the same contract (it shares the runner's lock)."""

    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        runner = offload.Runner(workers=1)
        yield runner.history
        runner.shutdown()


class TestSQLiteJournal(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteJournal]:
        journal = SQLiteJournal(tmp_path / "journal.sqlite3")
        yield journal
        journal.close()
