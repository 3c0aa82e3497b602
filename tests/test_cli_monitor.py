"""``offload status/tasks/show/dashboard``: over a real dashboard (``--url``) and the in-process runner."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from offload import Runner
from offload.cli import main
from offload.testing import FakeClock

from .conftest import WAIT
from .dashboard_support import TOKEN, Client, Scenario, populate, running_dashboard


@pytest.fixture
def scenario(runner: Runner, fake_clock: FakeClock) -> Iterator[Scenario]:
    s = populate(runner, fake_clock)
    yield s
    s.release.set()


@pytest.fixture
def url(scenario: Scenario) -> Iterator[str]:
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        yield f"http://{client.default_host}/"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_status_table(capsys: pytest.CaptureFixture[str], url: str):
    status, out, _ = run(capsys, "status", "--url", url, "--token", TOKEN)
    assert status == 0
    assert out.startswith(f"offload status: live runner 'offload-test' (pid {os.getpid()}) at ")
    assert re.search(r"^failed\s+1$", out, re.M)
    assert re.search(r"^succeeded\s+2$", out, re.M)
    assert re.search(r"^workers busy / idle\s+1 / \d+$", out, re.M)
    assert re.search(r"^abandoned threads\s+0$", out, re.M)


def test_status_json_is_the_api_document(capsys: pytest.CaptureFixture[str], url: str):
    status, out, _ = run(capsys, "status", "--url", url, "--token", TOKEN, "--json")
    assert status == 0
    data = json.loads(out)
    api = Client(url).get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert data.keys() == api.keys()
    assert data["counts"] == api["counts"]


def test_status_watch_refreshes(capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OFFLOAD_DASHBOARD_TOKEN", TOKEN)
    status, out, _ = run(capsys, "status", "--url", url, "--watch", "--interval", "0.01", "--iterations", "3")
    assert status == 0
    assert out.count("offload status:") == 3


def test_tasks_and_filters(capsys: pytest.CaptureFixture[str], url: str, scenario: Scenario):
    status, out, _ = run(capsys, "tasks", "--url", url, "--token", TOKEN, "--state", "failed")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "state", "attempts", "created", "name", "error"]
    assert lines[1].startswith(f"{scenario.failed.id}  failed")
    assert lines[-1] == "(1 of 1 matching)"
    status, out, _ = run(capsys, "tasks", "--url", url, "--token", TOKEN, "--limit", "2", "--json")
    data = json.loads(out)
    assert (len(data["tasks"]), data["total"]) == (2, 5)
    status, out, _ = run(capsys, "tasks", "--url", url, "--token", TOKEN, "--name", "tests.dashboard.add", "--json")
    assert {t["id"] for t in json.loads(out)["tasks"]} == {scenario.succeeded.id, scenario.scheduled.id}


def test_tasks_refuses_bad_options(capsys: pytest.CaptureFixture[str]):
    for argv in (["tasks", "--limit", "0"], ["tasks", "--limit", "501"], ["tasks", "--state", "exploded"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "must be between 1 and 500, got 501" in capsys.readouterr().err


def test_show(capsys: pytest.CaptureFixture[str], url: str, scenario: Scenario):
    status, out, _ = run(capsys, "show", scenario.failed.id, "--url", url, "--token", TOKEN)
    assert status == 0
    assert re.search(r"^state\s+failed$", out, re.M)
    assert re.search(r"^password\s+\*{8}$", out, re.M)
    assert "hunter2" not in out
    assert "error: builtins.ValueError: boom with" in out
    status, out, _ = run(capsys, "show", scenario.retried.id, "--url", url, "--token", TOKEN, "--json")
    assert [a["outcome"] for a in json.loads(out)["attempt_records"]] == ["retrying", "succeeded"]
    status, _, err = run(capsys, "show", "nope", "--url", url, "--token", TOKEN)
    assert status == 1
    assert "no task with id 'nope'" in err


def test_wrong_token_and_unreachable_dashboard(capsys: pytest.CaptureFixture[str], url: str):
    status, _, err = run(capsys, "status", "--url", url, "--token", "wrong-wrong-wrong-wrong")
    assert status == 1
    assert "HTTP 401: authentication required" in err
    status, _, err = run(capsys, "tasks", "--url", "http://127.0.0.1:9/")
    assert status == 1
    assert "cannot reach the dashboard at http://127.0.0.1:9" in err


def test_without_url_the_process_own_runner_is_read(capsys: pytest.CaptureFixture[str], scenario: Scenario):
    # The runner fixture is this process's default runner.
    status, out, err = run(capsys, "show", scenario.running.id)
    assert status == 0
    assert "current stack:" in out
    assert "no --url or --journal given" in err


def test_dashboard_refuses_an_open_bind_without_token(capsys: pytest.CaptureFixture[str]):
    status, _, err = run(capsys, "dashboard", "--host", "0.0.0.0", "--allowed-host", "example.com")
    assert status == 2
    assert "refusing to listen on '0.0.0.0' without authentication" in err


@pytest.mark.subprocess
def test_dashboard_command_serves_until_interrupted():
    env = {**os.environ, "OFFLOAD_DASHBOARD_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload", "dashboard", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"offload dashboard on (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        client = Client(match[1])
        assert client.get("/api/stats").status == 401
        reply = client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status == 200
        assert reply.json()["counts"]["queued"] == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        if proc.stderr is not None:
            proc.stderr.close()
