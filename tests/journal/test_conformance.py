"""Both stores pass the public conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import offload
from offload.journal import MemoryStore, SQLiteJournal, _writer
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
    """The default: enqueues, start marks and finishes through the intake log."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteJournal]:
        journal = SQLiteJournal(tmp_path / "journal.sqlite3")
        yield journal
        journal.close()


class TestSQLiteJournalWithoutIntake(StoreConformance):
    """Every write commits before it returns (``intake=False``, as with ``synchronous="full"``)."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteJournal]:
        journal = SQLiteJournal(tmp_path / "journal.sqlite3", intake=False)
        yield journal
        journal.close()


class TestSQLiteJournalOnOldSQLite(StoreConformance):
    """The intake applied one statement per record, as on SQLite builds without UPDATE FROM or JSON."""

    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteJournal]:
        monkeypatch.setattr(_writer, "set_based", lambda conn: False)
        journal = SQLiteJournal(tmp_path / "journal.sqlite3")
        yield journal
        journal.close()
