"""The dashboard, its API and the monitoring commands over a journal file written by real runners.

A journal is shared by every process configured with it and outlives them, so
these tests write it with real :class:`~offload.Runner` objects (one in a child
process that has exited by the time anything is read) and read it back through
:class:`~offload.dashboard.JournalSource`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pytest

import offload
from offload import Runner, TaskHandle
from offload.cli import main
from offload.dashboard import JournalSource, Source, TaskQuery, serve
from offload.journal import SQLiteJournal

from .conftest import WAIT
from .dashboard_support import TOKEN, XSS, Client, add, boom
from .test_dashboard_api import check

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = ("hunter2", "t0ps3cret", "k3y")

BLOCK_STARTED = threading.Event()
BLOCK_RELEASE = threading.Event()
FAIL_NEXT: list[bool] = []


@offload.task(name="tests.journal_dashboard.block")
def block() -> None:
    BLOCK_STARTED.set()
    BLOCK_RELEASE.wait(WAIT)


@offload.task(name="tests.journal_dashboard.fail_once")
def fail_once(label: str) -> str:
    if FAIL_NEXT:
        FAIL_NEXT.pop()
        raise RuntimeError(f"{label} failed <b>once</b>")
    return label


class Done(offload.Hook):
    """Sets an event per task id when its task reaches a final state in this process."""

    def __init__(self) -> None:
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, task_id: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(task_id, threading.Event())

    def after_success(self, handle: TaskHandle, result: Any) -> None:
        self.event(handle.id).set()

    def after_failure(self, handle: TaskHandle, exc: BaseException) -> None:
        self.event(handle.id).set()


@dataclass
class Written:
    """A journal file and the ids of what a runner (now shut down) left in it."""

    path: Path
    failed: str
    succeeded: str
    scheduled: str
    fail_once: str


def journal_runner(path: Path, **options: Any) -> Runner:
    return Runner(workers=2, journal=str(path), drain_timeout=WAIT, name="offload-test-journal", **options)


@pytest.fixture
def written(tmp_path: Path) -> Written:
    return write_journal(tmp_path)


def write_journal(tmp_path: Path) -> Written:
    """A journal with a failed, a succeeded, a scheduled and a failed-once task, its runner shut down."""
    path = tmp_path / "offload.sqlite3"
    runner = journal_runner(path)
    try:
        failed = runner.submit(boom, XSS, password="hunter2", token="t0ps3cret", nested={"api_key": "k3y", "x": 1})
        succeeded = runner.submit(add, 1, 2)
        FAIL_NEXT[:] = [True]
        flaky = runner.submit(fail_once, "first")
        scheduled = runner._enqueue(add, (3, 4), {}, countdown=3600)
        for handle in (failed, succeeded, flaky):
            assert handle.wait(WAIT)
    finally:
        runner.shutdown(wait=True)
    return Written(path, failed.id, succeeded.id, scheduled.id, flaky.id)


@pytest.fixture
def source(written: Written) -> Iterator[JournalSource]:
    with JournalSource(written.path) as opened:
        yield opened


@pytest.fixture
def api(source: JournalSource) -> Iterator[Client]:
    server = serve(port=0, background=True, token=TOKEN, source=source)
    try:
        yield Client(server.url)
    finally:
        server.stop()


# -- the source --------------------------------------------------------------------


def test_is_a_source_and_reads_what_the_stopped_runner_wrote(source: JournalSource, written: Written):
    assert isinstance(source, Source)
    overview = source.overview()
    assert overview.counts["failed"] == 2
    assert overview.counts["succeeded"] == 1
    assert overview.counts["scheduled"] == 1
    assert overview.submitted == 4
    assert {state: overview.counts[state] for state in source.store.counts()} == source.store.counts()
    assert sum(b.succeeded for b in overview.series) == 1
    assert sum(b.failed for b in overview.series) == 2
    assert overview.run_time_p50 is not None
    assert str(written.path) in overview.source
    page = source.tasks(TaskQuery(state=offload.State.FAILED))
    assert {t.id for t in page.tasks} == {written.failed, written.fail_once}
    assert page.total == 2


def test_missing_journal_is_refused_and_never_created(tmp_path: Path):
    missing = tmp_path / "nope" / "offload.sqlite3"
    with pytest.raises(offload.JournalError, match=f"no journal at {missing}"):
        JournalSource(missing)
    assert not missing.exists()
    assert not missing.parent.exists()
    with pytest.raises(TypeError, match=r"journal must be a path or an offload\.journal\.Store"):
        JournalSource(42)  # type: ignore[arg-type]


def test_not_a_journal_is_a_clear_error(tmp_path: Path):
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not an SQLite file at all" * 100)
    with pytest.raises(offload.JournalError, match=r"garbage\.sqlite3"):
        JournalSource(garbage).overview()


def test_pages_and_filters(source: JournalSource, written: Written):
    first = source.tasks(TaskQuery(limit=2))
    second = source.tasks(TaskQuery(limit=2, offset=2))
    assert (first.total, second.total) == (4, 4)
    newest_first = [written.scheduled, written.fail_once, written.succeeded, written.failed]
    assert [t.id for t in first.tasks + second.tasks] == newest_first
    assert [t.id for t in source.tasks(TaskQuery(name="tests.dashboard.add")).tasks] == [
        written.scheduled,
        written.succeeded,
    ]
    assert source.tasks(TaskQuery(queue="nowhere")).total == 0
    created = {t.id: t.created_at for t in first.tasks + second.tasks}
    since = source.tasks(TaskQuery(since=created[written.fail_once]))
    assert [t.id for t in since.tasks] == [written.scheduled, written.fail_once]
    until = source.tasks(TaskQuery(until=created[written.succeeded]))
    assert [t.id for t in until.tasks] == [written.failed]
    scheduled = next(t for t in first.tasks if t.id == written.scheduled)
    assert scheduled.state == "scheduled"
    assert scheduled.next_attempt_at is not None and scheduled.next_attempt_at > scheduled.created_at + 3000


def test_detail_masks_secrets_and_says_what_a_journal_keeps(source: JournalSource, written: Written):
    detail = source.task(written.failed)
    assert detail is not None
    assert detail.args == [repr(XSS)]
    assert detail.kwargs is not None
    assert detail.kwargs["password"] == detail.kwargs["token"] == "********"
    assert "'api_key': '********'" in detail.kwargs["nested"]
    assert not any(secret in json.dumps(detail.kwargs) for secret in SECRETS)
    assert detail.error is not None and detail.error.type == "builtins.ValueError"
    assert XSS in detail.error.message
    assert "Traceback" in detail.error.traceback
    assert (detail.task.attempts, detail.attempt_records, detail.stack) == (1, [], None)
    assert detail.can_retry and not detail.can_cancel
    assert source.task("nope") is None


def test_undecodable_payload_is_shown_not_raised(written: Written):
    journal = SQLiteJournal(written.path)
    try:
        journal._write([("UPDATE tasks SET payload = ? WHERE id = ?", ("{not json", written.failed))])
        with JournalSource(journal) as source:
            detail = source.task(written.failed)
    finally:
        journal.close()
    assert detail is not None and detail.args is not None
    assert detail.args[0].startswith("<the stored arguments cannot be decoded:")


def test_names(source: JournalSource, written: Written):
    by_name = {n.name: n for n in source.names()}
    assert by_name["tests.dashboard.boom"].failure_rate == 1.0
    assert by_name["tests.dashboard.boom"].last_failure_id == written.failed
    assert by_name["tests.dashboard.add"].count == 2
    assert by_name["tests.dashboard.add"].active == 1
    assert by_name["tests.dashboard.add"].failure_rate == 0.0
    assert by_name["tests.dashboard.add"].duration_p50 is not None


def test_running_rows_name_their_process(tmp_path: Path):
    path = tmp_path / "offload.sqlite3"
    BLOCK_STARTED.clear()
    BLOCK_RELEASE.clear()
    runner = journal_runner(path)
    try:
        handle = runner.submit(block)
        assert BLOCK_STARTED.wait(WAIT)
        with JournalSource(path) as source:
            (running,) = source.running()
            assert (running.id, running.attempt, running.stack, running.thread_id) == (handle.id, 1, None, None)
            assert running.owner is not None and f":{os.getpid()}:" in running.owner
            assert running.age is not None and running.age >= 0.0
            assert source.overview().busy == 1
            server = serve(port=0, background=True, token=TOKEN, source=source)
            try:
                page = Client(server.url).get("/running", headers=AUTH)
            finally:
                server.stop()
        assert page.status == 200
        assert "the task runs in another process" in page.text
        assert escape(running.owner) in page.text
    finally:
        BLOCK_RELEASE.set()
        runner.shutdown(wait=True)


# -- the API and the pages ---------------------------------------------------------


def test_api_answers_match_the_openapi_description(api: Client, written: Written):
    stats = check(api.get("/api/stats", headers=AUTH), "/api/stats")
    assert stats["counts"]["failed"] == 2
    page = check(api.get("/api/tasks?state=failed&limit=1", headers=AUTH), "/api/tasks")
    assert (len(page["tasks"]), page["total"]) == (1, 2)
    detail = check(api.get(f"/api/tasks/{written.failed}", headers=AUTH), "/api/tasks/{id}")
    assert detail["kwargs"]["password"] == "********"
    assert (detail["reason"], detail["owner"]) == (None, None)
    names = check(api.get("/api/names", headers=AUTH), "/api/names")
    assert {n["name"] for n in names["names"]} >= {"tests.dashboard.add", "tests.dashboard.boom"}
    assert check(api.get("/api/running", headers=AUTH), "/api/running") == {"running": []}
    assert check(api.get("/api/tasks/nope", headers=AUTH), "/api/tasks/{id}")["status"] == 404


def test_pages_render_and_escape_what_tasks_wrote(api: Client, written: Written):
    for path in ("/", "/tasks", "/tasks?state=failed", "/names", "/running", f"/tasks/{written.failed}"):
        reply = api.get(path, headers=AUTH)
        assert reply.status == 200, path
        assert XSS not in reply.text, path
        assert "<b>once</b>" not in reply.text, path
        assert not any(secret in reply.text for secret in SECRETS), path
    detail = api.get(f"/tasks/{written.failed}", headers=AUTH).text
    assert escape(XSS, quote=False) in detail or escape(XSS) in detail
    assert "This source keeps no per-attempt records" in detail


def test_actions_need_the_token(api: Client, written: Written, source: JournalSource):
    for path in (f"/api/tasks/{written.failed}/retry", f"/api/tasks/{written.scheduled}/cancel", "/api/purge"):
        reply = api.post(path)
        assert reply.status in (401, 403), path
    counts = source.overview().counts
    assert (counts["failed"], counts["scheduled"], counts["succeeded"]) == (2, 1, 1)


def test_read_only_journal_dashboard_refuses_actions(source: JournalSource, written: Written):
    server = serve(port=0, background=True, source=source)
    try:
        client = Client(server.url)
        assert client.get("/api/stats").status == 200
        assert client.post("/api/purge").status in (401, 403)
    finally:
        server.stop()
    assert source.overview().counts["succeeded"] == 1


def test_retry_requeues_the_row_and_a_runner_on_the_journal_runs_it(api: Client, written: Written):
    path = f"/api/tasks/{written.fail_once}/retry"
    body = check(api.post(path, headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert body == {"id": written.fail_once, "retry_of": written.fail_once}
    again = check(api.post(path, headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert again["status"] == 409
    refused = check(api.post(f"/api/tasks/{written.succeeded}/retry", headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert refused["status"] == 409 and "only a failed or interrupted task" in refused["error"]
    assert check(api.post("/api/tasks/nope/retry", headers=AUTH), "/api/tasks/{id}/retry", "post")["status"] == 404
    done = Done()
    FAIL_NEXT.clear()
    runner = journal_runner(written.path, hooks=[done])
    try:
        assert done.event(written.fail_once).wait(WAIT)
    finally:
        runner.shutdown(wait=True)
    detail = check(api.get(f"/api/tasks/{written.fail_once}", headers=AUTH), "/api/tasks/{id}")
    assert (detail["task"]["state"], detail["task"]["attempts"]) == ("succeeded", 2)


def test_cancel_a_waiting_row(api: Client, written: Written, source: JournalSource):
    path = f"/api/tasks/{written.scheduled}/cancel"
    assert check(api.post(path, headers=AUTH), "/api/tasks/{id}/cancel", "post") == {
        "id": written.scheduled,
        "cancelled": True,
    }
    assert check(api.post(path, headers=AUTH), "/api/tasks/{id}/cancel", "post")["cancelled"] is True  # idempotent
    detail = source.task(written.scheduled)
    assert detail is not None and detail.task.state == "cancelled"
    assert detail.cancel_reason == "cancelled from the dashboard"
    refused = check(api.post(f"/api/tasks/{written.failed}/cancel", headers=AUTH), "/api/tasks/{id}/cancel", "post")
    assert refused["status"] == 409


SECOND_RAN = threading.Event()


@offload.task(name="tests.journal_dashboard.second")
def second() -> None:
    SECOND_RAN.set()


def test_cancel_a_row_a_live_process_holds_means_it_never_runs(tmp_path: Path):
    path = tmp_path / "offload.sqlite3"
    BLOCK_STARTED.clear()
    BLOCK_RELEASE.clear()
    SECOND_RAN.clear()
    done = Done()
    runner = Runner(workers=1, journal=str(path), drain_timeout=WAIT, name="offload-test-journal", hooks=[done])
    try:
        first = runner.submit(block)
        assert BLOCK_STARTED.wait(WAIT)
        queued = runner.submit(second)  # held in this process's memory, behind the only worker
        with JournalSource(path) as source:
            assert source.cancel(queued.id) is True
            BLOCK_RELEASE.set()
            assert first.wait(WAIT)
            assert queued.wait(WAIT)  # the worker reached it and refused to run it
            row = source.task(queued.id)
        assert not SECOND_RAN.is_set()
        assert row is not None and row.task.state == "cancelled"
        assert queued.state is offload.State.CANCELLED  # in this process too, not failed
        assert queued.cancel_reason == "its journal row was cancelled (cancelled from the dashboard)"
        assert not done.event(queued.id).is_set()  # neither after_success nor after_failure
    finally:
        BLOCK_RELEASE.set()
        runner.shutdown(wait=True)


def test_purge_deletes_finished_rows_only(api: Client, written: Written, source: JournalSource):
    assert check(api.post("/api/purge", headers=AUTH), "/api/purge", "post") == {"purged": 3}
    assert [t.id for t in source.tasks(TaskQuery()).tasks] == [written.scheduled]


# -- several processes, after they stopped -------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import offload

    @offload.task(name="tests.journal_dashboard.child")
    def child(n: int) -> int:
        if n == 2:
            raise KeyError("child <i>fails</i>")
        return n

    runner = offload.Runner(workers=2, journal=sys.argv[1])
    handles = [runner.submit(child, n) for n in range(3)]
    for handle in handles:
        handle.wait(30)
    runner.shutdown(wait=True)
    print(" ".join(h.id for h in handles))
    """
)


@pytest.mark.subprocess
def test_shows_every_process_sharing_the_journal_after_they_exited(written: Written, tmp_path: Path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(written.path)], capture_output=True, text=True, timeout=WAIT * 3, check=False
    )
    assert done.returncode == 0, done.stderr
    child_ids = done.stdout.split()
    assert len(child_ids) == 3
    with JournalSource(written.path) as source:
        ids = {t.id for t in source.tasks(TaskQuery(limit=100)).tasks}
        assert ids == {*child_ids, written.failed, written.succeeded, written.scheduled, written.fail_once}
        by_name = {n.name: n for n in source.names()}
        child_stats = by_name["tests.journal_dashboard.child"]
        assert (child_stats.succeeded, child_stats.failed) == (2, 1)
        child_failure = source.task(child_ids[2])
        assert child_failure is not None and child_failure.error is not None
        assert child_failure.error.type == "builtins.KeyError"


# -- the command line -----------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_status_tasks_show_read_the_journal(capsys: pytest.CaptureFixture[str], written: Written):
    journal = str(written.path)
    status, out, _ = run_cli(capsys, "status", "--journal", journal, "--json")
    assert status == 0
    overview = json.loads(out)
    assert (overview["counts"]["failed"], overview["counts"]["scheduled"]) == (2, 1)
    assert journal in overview["source"]
    status, out, _ = run_cli(capsys, "status", "--journal", journal)
    assert status == 0 and "failed" in out
    watch = ("--watch", "--interval", "0.01", "--iterations", "2")
    status, out, _ = run_cli(capsys, "status", "--journal", journal, *watch)
    assert status == 0 and out.count("queue depth") == 2
    status, out, _ = run_cli(capsys, "tasks", "--journal", journal, "--state", "failed", "--json")
    assert status == 0
    assert {t["id"] for t in json.loads(out)["tasks"]} == {written.failed, written.fail_once}
    status, out, _ = run_cli(capsys, "tasks", "--journal", journal, "--name", "tests.dashboard.add", "--limit", "1")
    assert status == 0 and "(1 of 2 matching)" in out
    status, out, _ = run_cli(capsys, "show", written.failed, "--journal", journal, "--json")
    assert status == 0
    shown = json.loads(out)
    assert shown["kwargs"]["password"] == "********"
    assert not any(secret in out for secret in SECRETS)
    status, out, err = run_cli(capsys, "show", "nope", "--journal", journal)
    assert status == 1 and "no task with id 'nope'" in err
    status, out, _ = run_cli(capsys, "show", written.failed, "--journal", journal)
    assert status == 0
    assert "(1 started; this source keeps no per-attempt records)" in out
    assert "hunter2" not in out


def test_reason_offload_gave_is_shown(capsys: pytest.CaptureFixture[str], written: Written):
    journal = SQLiteJournal(written.path)
    try:  # what recovery writes when a task's process died while running it, three times
        assert journal.requeue(written.failed, 1.0)
        assert journal.finish(written.failed, None, "failed", 2.0, reason="worker_lost")
    finally:
        journal.close()
    with JournalSource(written.path) as source:
        detail = source.task(written.failed)
        assert detail is not None and detail.reason == "worker_lost"
        server = serve(port=0, background=True, token=TOKEN, source=source)
        try:
            page = Client(server.url).get(f"/tasks/{written.failed}", headers=AUTH).text
        finally:
            server.stop()
    assert "<td>reason</td><td>worker_lost</td>" in page.replace("\n", "")
    status, out, _ = run_cli(capsys, "show", written.failed, "--journal", str(written.path))
    assert status == 0 and re.search(r"reason\s+worker_lost", out)


def test_journal_from_the_environment(
    capsys: pytest.CaptureFixture[str], written: Written, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OFFLOAD_JOURNAL", str(written.path))
    status, out, _ = run_cli(capsys, "tasks", "--json")
    assert status == 0 and json.loads(out)["total"] == 4


def test_cli_bad_journal_path(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    missing = tmp_path / "missing.sqlite3"
    for argv in (["status"], ["tasks"], ["show", "x"], ["dashboard", "--port", "0"]):
        status, _, err = run_cli(capsys, *argv, "--journal", str(missing))
        assert status == 1, argv
        assert f"no journal at {missing}" in err, argv
    assert not missing.exists()
    status, _, err = run_cli(capsys, "tasks", "--journal", str(tmp_path))
    assert status == 1 and f"no journal at {tmp_path}: no such file" in err


def test_cli_journal_and_url_are_exclusive(capsys: pytest.CaptureFixture[str], written: Written):
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--journal", str(written.path), "--url", "http://127.0.0.1:9/"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_http_source_over_a_journal_dashboard_reads_the_same(api: Client, source: JournalSource, written: Written):
    from offload.dashboard import HttpSource

    remote = HttpSource(f"http://{api.default_host}/", token=TOKEN)
    assert remote.tasks(TaskQuery(limit=10)) == source.tasks(TaskQuery(limit=10))
    assert remote.task(written.failed) == source.task(written.failed)
    assert remote.names() == source.names()
    assert remote.running() == source.running() == []


@pytest.mark.subprocess
def test_dashboard_command_serves_a_journal(written: Written):
    env = {**os.environ, "OFFLOAD_DASHBOARD_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "offload", "dashboard", "--journal", str(written.path), "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"offload dashboard on (http://127\.0\.0\.1:\d+/) \(actions enabled", line)
        assert match, line
        client = Client(match[1])
        assert client.get("/api/stats").status == 401
        stats = client.get("/api/stats", headers=AUTH).json()
        assert (stats["counts"]["failed"], stats["counts"]["scheduled"]) == (2, 1)
        assert str(written.path) in stats["source"]
        assert client.post("/api/purge", headers=AUTH).json() == {"purged": 3}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        if proc.stderr is not None:
            proc.stderr.close()
    with JournalSource(written.path) as source:
        assert [t.id for t in source.tasks(TaskQuery()).tasks] == [written.scheduled]
