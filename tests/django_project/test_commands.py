"""The management commands over a real journal, and offload_worker as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

import offload
from offload.journal import SQLiteJournal
from offload.testing import use_runner

from .shop.models import Order
from .shop.tasks import record_order

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def journal_counts(path: Path) -> dict[str, int]:
    journal = SQLiteJournal(str(path))
    try:
        return journal.counts()
    finally:
        journal.close()


@pytest.mark.subprocess
def test_offload_worker_runs_what_an_enqueue_only_web_process_journaled(tmp_path: Path) -> None:
    path = tmp_path / "offload.sqlite3"
    web = offload.Runner(journal=str(path), workers=0)  # enqueue only, like a web process
    with use_runner(web):
        for i in range(20):
            record_order.delay(f"w{i}@example.com")
    web.shutdown()
    assert journal_counts(path).get("queued") == 20
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "OFFLOAD_TEST_PG_NAME": connection.settings_dict["NAME"],
    }
    command = [sys.executable, "-m", "django", "offload_worker", "--journal", str(path), "--workers", "4"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as worker:
        try:
            deadline = time.monotonic() + 60
            while journal_counts(path).get("succeeded", 0) < 20:  # another process's progress
                assert worker.poll() is None, worker.communicate()[1]
                assert time.monotonic() < deadline, journal_counts(path)
                time.sleep(0.05)  # sleep-ok: polling another process's progress in the journal file, bounded
            worker.send_signal(signal.SIGTERM)
            _, log = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate(timeout=30)
    assert worker.returncode == 0, log
    assert "shop.record_order" in log  # autodiscovered the app's tasks module
    assert Order.objects.filter(email__startswith="w").count() == 20


def test_status_retry_and_purge_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "offload.sqlite3")
    failing = offload.task(name="shop.always_fails")(_always_fails)
    runner = offload.Runner(journal=path, workers=1)
    with use_runner(runner):
        handle = failing.delay(3)
        assert isinstance(handle.exception(timeout=10), ValueError)
    runner.shutdown()
    call_command("offload_status", journal=path)
    assert "failed" in capsys.readouterr().out
    call_command("offload_retry", handle.id, journal=path)
    assert journal_counts(Path(path)).get("queued") == 1
    call_command("offload_purge", journal=path, older_than="0s", state=None)
    capsys.readouterr()


def _always_fails(x: int) -> None:
    raise ValueError(f"bad order {x}")


def test_commands_need_a_journal(settings: object) -> None:
    settings.OFFLOAD = {"WORKERS": 2}  # type: ignore[attr-defined]
    for command in ("offload_status", "offload_worker"):
        with pytest.raises(CommandError, match=r"OFFLOAD\['JOURNAL'\]"):
            call_command(command)
    with pytest.raises(CommandError, match="failed"):
        call_command("offload_retry", "no-such-id", journal=str(Path(os.devnull).parent / "missing.sqlite3"))
