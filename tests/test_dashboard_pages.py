"""The HTML pages, rendered by a real server and read with a real HTTP client."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from offload import Runner
from offload.dashboard import create_app, serve
from offload.testing import FakeClock

from .dashboard_support import TOKEN, Client, Scenario, populate, running_dashboard


@pytest.fixture
def scenario(runner: Runner, fake_clock: FakeClock) -> Iterator[Scenario]:
    s = populate(runner, fake_clock)
    yield s
    s.release.set()


@pytest.fixture
def client(scenario: Scenario) -> Iterator[Client]:
    with running_dashboard(scenario.runner) as c:
        yield c


def field(text: str, name: str) -> str:
    match = re.search(rf'data-field="{re.escape(name)}">([^<]*)<', text)
    assert match is not None, name
    return match[1]


def test_overview(client: Client):
    reply = client.get("/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    text = reply.text
    assert field(text, "counts.failed") == "1"
    assert field(text, "counts.succeeded") == "2"
    assert field(text, "counts.running") == "1"
    assert field(text, "counts.scheduled") == "1"
    assert field(text, "busy") == "1"
    assert field(text, "abandoned_threads") == "0"
    assert field(text, "queue_depth") == "1 / 10000"
    assert text.count('<svg class="chart"') == 2
    assert "Throughput" in text
    assert "Failure rate" in text


def test_task_list_filters_and_links(client: Client, scenario: Scenario):
    text = client.get("/tasks?state=failed").text
    assert f'href="/tasks/{scenario.failed.id}"' in text
    assert scenario.succeeded.id not in text
    assert '<option value="failed" selected>' in text
    text = client.get("/tasks?limit=2").text
    assert field(text, "shown") == "1 to 2 of 5"
    assert "older »" in text
    assert "offset=2" in text
    assert client.get("/tasks?state=bogus").status == 400


def test_task_detail(client: Client, scenario: Scenario):
    text = client.get(f"/tasks/{scenario.retried.id}").text
    assert text.count('<span class="state retrying">retrying</span>') == 1
    assert "ConnectionError: first attempt fails" in text
    assert "Arguments are not kept" in text
    failed = client.get(f"/tasks/{scenario.failed.id}").text
    assert "<h2>Error</h2>" in failed
    assert "Traceback (most recent call last)" in failed
    assert "password</td><td><code>********</code>" in failed
    running = client.get(f"/tasks/{scenario.running.id}").text
    assert "<h2>Current stack</h2>" in running
    assert "in blocker" in running
    assert client.get("/tasks/unknown").status == 404


def test_names_and_running(client: Client, scenario: Scenario):
    names = client.get("/names").text
    assert "tests.dashboard.boom" in names
    assert "100.0%" in names
    running = client.get("/running").text
    assert scenario.running.id in running
    assert "release.wait(WAIT)" in running


def test_read_only_pages_show_no_action(client: Client, scenario: Scenario):
    for path in ["/tasks", f"/tasks/{scenario.failed.id}", f"/tasks/{scenario.scheduled.id}"]:
        assert 'method="post"' not in client.get(path).text


def test_actions_shown_when_enabled(scenario: Scenario):
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            f'action="/tasks/{scenario.failed.id}/retry"'
            in client.get(f"/tasks/{scenario.failed.id}", headers=auth).text
        )
        assert (
            f'action="/tasks/{scenario.scheduled.id}/cancel"'
            in client.get(f"/tasks/{scenario.scheduled.id}", headers=auth).text
        )
        assert 'action="/purge"' in client.get("/tasks", headers=auth).text
        # Bearer requests skip the CSRF check: a browser cannot send that header cross-site.
        reply = client.post(f"/tasks/{scenario.failed.id}/retry", headers=auth)
        assert reply.status == 303
        new_id = reply.headers["location"].rsplit("/", 1)[1]
        assert new_id != scenario.failed.id
        assert scenario.runner.get(new_id) is not None


def test_static_assets(client: Client):
    js = client.get("/static/dashboard.js")
    assert (js.status, js.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert b"replaceChildren" in js.body
    css = client.get("/static/dashboard.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "max-age" in css.headers["cache-control"]
    assert client.get("/").headers["cache-control"] == "no-store"


def mounted(app: Any, prefix: str) -> Any:
    """A minimal host framework: serves ``app`` under ``prefix`` (sets SCRIPT_NAME)."""

    def host(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(prefix + "/") and path != prefix:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"host 404"]
        environ["SCRIPT_NAME"] = prefix
        environ["PATH_INFO"] = path[len(prefix) :] or "/"
        return app(environ, start_response)  # type: ignore[no-any-return]

    return host


def test_mounted_under_a_prefix(scenario: Scenario):
    app = create_app(runner=scenario.runner)
    with serve(app=mounted(app, "/ops/tasks"), port=0, background=True) as server:
        client = Client(server.url)
        text = client.get("/ops/tasks/").text
        assert 'href="/ops/tasks/static/dashboard.css"' in text
        assert 'href="/ops/tasks/tasks"' in text
        detail = client.get(f"/ops/tasks/tasks/{scenario.failed.id}")
        assert detail.status == 200
        assert client.get("/ops/tasks/api/stats").json()["counts"]["failed"] == 1


def test_pages_and_api_while_tasks_run(runner: Runner):
    """Reads race with workers finishing tasks; every answer must still be a 200."""
    handles = [runner.submit(sum, [i, i]) for i in range(1500)]
    statuses = []
    with running_dashboard(runner) as client:
        while True:
            done = all(h.done() for h in handles)
            for path in ("/api/tasks?limit=500", "/api/names", "/api/stats", "/", "/names", "/running"):
                statuses.append((path, client.get(path).status))
            if done:
                break
    assert all(status == 200 for _, status in statuses), [s for s in statuses if s[1] != 200]
