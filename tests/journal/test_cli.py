"""`offload journal ...` and `offload worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import offload
from offload.cli import main
from offload.journal import SQLiteJournal, TaskRecord

from ..conftest import WAIT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "j.sqlite3"
    store = SQLiteJournal(path)
    now = time.time()
    store.enqueue([TaskRecord(id=f"r{n}", name="worker_test.double", payload=f"[[{n}],{{}}]") for n in range(5)])
    store.start("r0", "nobody", now)  # not its owner: stays queued
    store.enqueue([TaskRecord(id="f1", name="x", payload="[[],{}]", owner="me")])
    store.start("f1", "me", now)
    store.finish("f1", "me", "failed", now - 10 * 86400, reason="worker_lost")
    store.close()
    return path


def cli(*argv: str) -> int:
    return main(list(argv))


def test_stats_list_show(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("journal", "stats", "--journal", str(journal)) == 0
    out = capsys.readouterr().out
    assert "queued                5" in out and "failed                1" in out
    assert cli("journal", "list", "--journal", str(journal), "--state", "failed") == 0
    out = capsys.readouterr().out
    assert "f1" in out and "worker_lost" in out and "r1" not in out
    assert cli("journal", "show", "--journal", str(journal), "r3") == 0
    assert "[[3],{}]" in capsys.readouterr().out
    assert cli("journal", "show", "--journal", str(journal), "nope") == 1
    assert "no task nope" in capsys.readouterr().err


def test_retry_and_purge(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("journal", "retry", "--journal", str(journal), "r1") == 1
    assert "it is queued, not finished" in capsys.readouterr().err
    assert cli("journal", "purge", "--journal", str(journal), "--state", "failed", "--older-than", "7d") == 0
    assert "deleted 1 failed row(s)" in capsys.readouterr().out
    assert cli("journal", "retry", "--journal", str(journal), "f1") == 1  # purged
    with pytest.raises(SystemExit):
        cli("journal", "purge", "--journal", str(journal), "--older-than", "7 days")
    assert "not a duration" in capsys.readouterr().err


def test_check_and_repair_a_damaged_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "j.sqlite3"
    store = SQLiteJournal(path)
    store.enqueue([TaskRecord(id=f"c{n}", name="x", payload="[[" + "7," * 300 + "7],{}]") for n in range(200)])
    store.checkpoint()
    store.close()
    assert cli("journal", "check", "--journal", str(path)) == 0
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)
    assert cli("journal", "check", "--journal", str(path)) == 1
    captured = capsys.readouterr()
    assert "damaged" in captured.out + captured.err
    assert cli("journal", "repair", "--journal", str(path)) == 0
    out = capsys.readouterr().out
    assert "moved the damaged journal to" in out
    assert cli("journal", "check", "--journal", str(path)) == 0
    repaired = SQLiteJournal(path)
    try:
        kept = repaired.counts()["queued"]
        assert 0 < kept <= 200  # rows on the damaged page, if it held rows, are gone
    finally:
        repaired.close()
    assert [p for p in os.listdir(tmp_path) if ".corrupt-" in p]


def test_missing_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("journal", "stats", "--journal", str(tmp_path / "none")) == 1
    assert "no journal at" in capsys.readouterr().err


@pytest.mark.subprocess
def test_worker_runs_work_enqueued_by_an_enqueue_only_process(tmp_path: Path) -> None:
    from ._worker_tasks import double

    path = tmp_path / "j.sqlite3"
    with offload.Runner(workers=0, journal=path) as web:  # e.g. the web process: enqueue only
        handles = [web.submit(double, n) for n in range(20)]
        assert all(h.state is offload.State.QUEUED for h in handles)
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "--journal", str(path),
         "--import", "tests.journal._worker_tasks", "--workers", "4"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    reader = SQLiteJournal(path)
    try:
        deadline = time.monotonic() + WAIT
        while reader.counts()["succeeded"] < 20 and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert [reader.fetch(h.id).result for h in handles] == [str(2 * n) for n in range(20)]  # type: ignore[union-attr]
    finally:
        reader.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err


def test_workers_zero_needs_a_journal() -> None:
    with pytest.raises(offload.ConfigurationError, match="workers=0"):
        offload.Runner(workers=0)


@pytest.mark.subprocess
def test_worker_runs_journal_work_and_drains_on_sigterm(journal: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "--journal", str(journal),
         "--import", "tests.journal._worker_tasks", "--workers", "2"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    reader = SQLiteJournal(journal)
    try:
        deadline = time.monotonic() + WAIT
        while reader.counts()["succeeded"] < 5 and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert reader.counts()["succeeded"] == 5
        assert reader.fetch("r4").result == "8"  # type: ignore[union-attr]
    finally:
        reader.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert "draining" in err


def test_worker_reports_a_module_it_cannot_import(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("worker", "--journal", str(journal), "--import", "no_such_module_xyz") == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err
