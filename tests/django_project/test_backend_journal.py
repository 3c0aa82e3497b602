"""``OffloadBackend`` with a journal: results readable from any process, work run by
``manage.py offload_worker``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from offload.contrib.django import backend, results
from offload.contrib.django.compat import TaskResultStatus

from ..conftest import WAIT
from .shop.tasks import add, flaky_webhook

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def wait_finished(result: Any) -> Any:
    """Until the task is done and its row says so (the journal commits a finish lazily)."""
    runner = backend._states[result.backend].runner
    handle = runner.get(result.id)
    assert handle is not None and handle.wait(WAIT)
    runner._journal.store.flush()
    return result


def child_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "OFFLOAD_TEST_PG_NAME": connection.settings_dict["NAME"],
        "OFFLOAD_TEST_TASKS_JOURNAL": settings.TASKS_JOURNAL,
        **extra,
    }


def test_with_a_journal_the_backend_supports_get_result() -> None:
    assert add.using(backend="durable").get_backend().supports_get_result is True
    assert add.get_backend().supports_get_result is False


def test_a_result_is_rebuilt_from_the_journal() -> None:
    result = wait_finished(add.using(backend="durable").enqueue(20, 22))
    results.RESULTS.clear()  # as in a process that did not enqueue it
    again = add.using(backend="durable").get_result(result.id)
    assert again is not result
    assert again.status == TaskResultStatus.SUCCESSFUL and again.return_value == 42
    assert again.args == [20, 22] and again.attempts == 1
    assert again.enqueued_at is not None and again.finished_at is not None


def test_a_failed_result_from_the_journal_has_its_last_error() -> None:
    result = wait_finished(flaky_webhook.using(backend="durable").enqueue("journal-1", fail_times=10))
    assert result.status == TaskResultStatus.FAILED and len(result.errors) == 4  # this process saw each
    results.RESULTS.clear()
    again = flaky_webhook.using(backend="durable").get_result(result.id)
    assert again.status == TaskResultStatus.FAILED
    assert again.attempts == 4
    assert [e.exception_class_path for e in again.errors] == ["builtins.ConnectionError"]  # the journal keeps the last


@pytest.mark.subprocess
def test_another_process_reads_the_result() -> None:
    result = wait_finished(add.using(backend="durable").enqueue(1, 2))
    code = (
        "import json; from tests.django_project.shop.tasks import add; "
        f"r = add.using(backend='durable').get_result({result.id!r}); "
        "print(json.dumps({'status': str(r.status), 'value': r.return_value, 'pid': __import__('os').getpid()}))"
    )
    done = subprocess.run(
        [sys.executable, "-m", "django", "shell", "--command", code],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "SUCCESSFUL" and seen["value"] == 3 and seen["pid"] != os.getpid()


@pytest.mark.subprocess
def test_offload_worker_runs_framework_tasks_enqueued_by_an_enqueue_only_process(tmp_path: Path) -> None:
    journal = str(tmp_path / "tasks.sqlite3")
    enqueue = (
        "import json; from tests.django_project.shop.tasks import add; "
        "ids = [add.using(backend='durable').enqueue(i, i).id for i in range(5)]; "
        "print(json.dumps(ids))"
    )
    # a web process that only enqueues (WORKERS=0): another process runs the tasks
    env = child_env(OFFLOAD_TEST_TASKS_JOURNAL=journal, OFFLOAD_TEST_TASKS_WORKERS="0")
    done = subprocess.run(
        [sys.executable, "-m", "django", "shell", "--command", enqueue],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "offload_worker", "--journal", journal, "--workers", "2"],
        cwd=ROOT, env=child_env(OFFLOAD_TEST_TASKS_JOURNAL=journal), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = [results.result_from_journal(journal, task_id) for task_id in ids]
        deadline = WAIT * 6
        start = time.monotonic()
        while not all(r is not None and r.is_finished for r in found):
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() - start < deadline, [r and r.status for r in found]
            time.sleep(0.05)  # sleep-ok: polling another process's progress in the journal, bounded
            found = [results.result_from_journal(journal, task_id) for task_id in ids]
    finally:
        worker.terminate()
        _, log = worker.communicate(timeout=60)
    assert [r.return_value for r in found if r is not None] == [0, 2, 4, 6, 8]
    assert worker.returncode == 0, log
