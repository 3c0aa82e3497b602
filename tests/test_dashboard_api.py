"""The JSON API against a real server on loopback, checked against the shipped OpenAPI file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema
import pytest

from offload import Runner, State
from offload.dashboard import MAX_PAGE_SIZE, ROUTES
from offload.testing import FakeClock

from .conftest import WAIT
from .dashboard_support import TOKEN, XSS, Client, Scenario, populate, running_dashboard

OPENAPI = json.loads(resources.files("offload.dashboard").joinpath("openapi.json").read_text())
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def check(reply: Any, path: str, method: str = "get") -> Any:
    """Assert the reply's status is documented for the operation and its body matches the schema."""
    operation = OPENAPI["paths"][path][method]
    documented = operation["responses"]
    assert str(reply.status) in documented, f"{method.upper()} {path} answered {reply.status}, not documented"
    assert reply.headers["content-type"].startswith("application/json")
    schema = documented[str(reply.status)]["content"]["application/json"]["schema"]
    body = reply.json()
    jsonschema.Draft202012Validator({**schema, "components": OPENAPI["components"]}).validate(body)
    return body


@pytest.fixture
def scenario(runner: Runner, fake_clock: FakeClock) -> Iterator[Scenario]:
    s = populate(runner, fake_clock)
    yield s
    s.release.set()


@pytest.fixture
def api(scenario: Scenario) -> Iterator[Client]:
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        yield client


def test_openapi_file_is_valid_and_matches_the_routes():
    jsonschema.Draft202012Validator.check_schema({"components": OPENAPI["components"]})
    documented = {(method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops}
    routed = {(r.method, r.path.replace("{id}", "{id}")) for r in ROUTES if r.path.startswith("/api/")}
    assert documented == routed


def test_openapi_names_every_task_state():
    states = [state.value for state in State]
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["TaskSummary"]["properties"]["state"]["enum"] == states
    assert list(schemas["Overview"]["properties"]["counts"]["properties"]) == states
    assert OPENAPI["paths"]["/api/tasks"]["get"]["parameters"][0]["schema"]["enum"] == states


def test_openapi_is_served(api: Client):
    reply = api.get("/api/openapi.json", headers=AUTH)
    assert reply.status == 200
    assert reply.json() == OPENAPI


def test_stats(api: Client, scenario: Scenario):
    body = check(api.get("/api/stats", headers=AUTH), "/api/stats")
    assert body["counts"]["failed"] == 1
    assert body["counts"]["succeeded"] == 2
    assert body["counts"]["running"] == 1
    assert body["counts"]["scheduled"] == 1
    assert body["busy"] == 1
    assert body["queue_depth"] == 1
    assert body["retries"] == 1
    assert sum(b["succeeded"] for b in body["series"]) == 2
    assert sum(b["failed"] for b in body["series"]) == 1


def test_task_list_filters_and_pages(api: Client, scenario: Scenario):
    everything = check(api.get("/api/tasks", headers=AUTH), "/api/tasks")
    assert everything["total"] == 5
    newest_first = [scenario.scheduled, scenario.running, scenario.succeeded, scenario.retried, scenario.failed]
    assert [t["id"] for t in everything["tasks"]] == [h.id for h in newest_first]

    failed = check(api.get("/api/tasks?state=failed", headers=AUTH), "/api/tasks")
    assert [t["id"] for t in failed["tasks"]] == [scenario.failed.id]
    assert failed["tasks"][0]["error_type"] == "builtins.ValueError"

    named = check(api.get("/api/tasks?name=tests.dashboard.add", headers=AUTH), "/api/tasks")
    assert {t["id"] for t in named["tasks"]} == {scenario.succeeded.id, scenario.scheduled.id}

    assert check(api.get("/api/tasks?queue=nope", headers=AUTH), "/api/tasks")["total"] == 0

    first = check(api.get("/api/tasks?limit=2", headers=AUTH), "/api/tasks")
    second = check(api.get("/api/tasks?limit=2&offset=2", headers=AUTH), "/api/tasks")
    third = check(api.get("/api/tasks?limit=2&offset=4", headers=AUTH), "/api/tasks")
    pages = [t["id"] for page in (first, second, third) for t in page["tasks"]]
    assert pages == [t["id"] for t in everything["tasks"]]
    assert (first["total"], len(third["tasks"])) == (5, 1)


def test_time_filters(api: Client, scenario: Scenario):
    cut = scenario.succeeded.created_at
    since = check(api.get(f"/api/tasks?since={cut!r}", headers=AUTH), "/api/tasks")
    until = check(api.get(f"/api/tasks?until={cut!r}", headers=AUTH), "/api/tasks")
    assert since["total"] + until["total"] == 5
    assert scenario.succeeded.id in {t["id"] for t in since["tasks"]}
    iso = check(api.get("/api/tasks?since=2000-01-01T00:00:00Z", headers=AUTH), "/api/tasks")
    assert iso["total"] == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=exploded", "state must be one of"),
        (f"limit={MAX_PAGE_SIZE + 1}", f"limit must be between 1 and {MAX_PAGE_SIZE}"),
        ("limit=0", "limit must be between"),
        ("offset=-1", "offset must be between"),
        ("limit=ten", "limit must be an integer"),
        ("since=yesterday", "since must be seconds since the epoch or an ISO 8601 time"),
        ("until=2026-01-01T00:00:00", "until must include a timezone"),
        ("since=nan", "since must be a finite time"),
    ],
)
def test_bad_filters_are_refused_with_a_clear_message(api: Client, query: str, message: str):
    body = check(api.get(f"/api/tasks?{query}", headers=AUTH), "/api/tasks")
    assert body["status"] == 400
    assert message in body["error"]


def test_task_detail_masks_secrets_and_lists_attempts(api: Client, scenario: Scenario):
    body = check(api.get(f"/api/tasks/{scenario.failed.id}", headers=AUTH), "/api/tasks/{id}")
    assert body["task"]["state"] == "failed"
    assert body["args"] == [repr(XSS)]
    assert body["kwargs"]["password"] == "********"
    assert body["kwargs"]["token"] == "********"
    assert "k3y" not in body["kwargs"]["nested"]
    assert "'api_key': '********'" in body["kwargs"]["nested"]
    assert "hunter2" not in json.dumps(body)
    assert body["error"]["type"] == "builtins.ValueError"
    assert XSS in body["error"]["message"]
    assert body["can_retry"] is True
    assert body["can_cancel"] is False
    [attempt] = body["attempt_records"]
    assert attempt["outcome"] == "failed"
    assert attempt["error"]["type"] == "builtins.ValueError"
    assert "Traceback" in attempt["error"]["traceback"]


def test_every_attempt_is_recorded(api: Client, scenario: Scenario):
    body = check(api.get(f"/api/tasks/{scenario.retried.id}", headers=AUTH), "/api/tasks/{id}")
    first, second = body["attempt_records"]
    assert (first["number"], first["outcome"], first["error"]["type"]) == (1, "retrying", "builtins.ConnectionError")
    assert (second["number"], second["outcome"], second["error"]) == (2, "succeeded", None)
    assert second["started_at"] >= first["finished_at"]
    assert body["args"] is None  # a succeeded task lets go of its arguments


def test_running_task_shows_its_stack(api: Client, scenario: Scenario):
    detail = check(api.get(f"/api/tasks/{scenario.running.id}", headers=AUTH), "/api/tasks/{id}")
    assert "in blocker" in detail["stack"]
    running = check(api.get("/api/running", headers=AUTH), "/api/running")["running"]
    assert [r["id"] for r in running] == [scenario.running.id]
    assert "release.wait(WAIT)" in running[0]["stack"]


def test_unknown_task_is_404(api: Client):
    body = check(api.get("/api/tasks/nope", headers=AUTH), "/api/tasks/{id}")
    assert body["status"] == 404


def test_names(api: Client, scenario: Scenario):
    body = check(api.get("/api/names", headers=AUTH), "/api/names")
    by_name = {n["name"]: n for n in body["names"]}
    assert by_name["tests.dashboard.boom"]["failure_rate"] == 1.0
    assert by_name["tests.dashboard.boom"]["last_failure_id"] == scenario.failed.id
    assert by_name["tests.dashboard.add"]["count"] == 2
    assert by_name["tests.dashboard.add"]["active"] == 1
    assert by_name["tests.dashboard.add"]["failure_rate"] == 0.0
    assert by_name["tests.dashboard.flaky"]["duration_p50"] is not None


def test_retry_enqueues_the_same_call_again(api: Client, scenario: Scenario):
    body = check(api.post(f"/api/tasks/{scenario.failed.id}/retry", headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert body["retry_of"] == scenario.failed.id
    new = scenario.runner.get(body["id"])
    assert new is not None and new.id != scenario.failed.id
    assert new.wait(WAIT)
    assert new.state is State.FAILED
    assert new.name == "tests.dashboard.boom"
    assert new._kwargs["password"] == "hunter2"  # the real arguments, not the masked text


def test_retry_of_a_task_that_did_not_fail_is_409(api: Client, scenario: Scenario):
    body = check(api.post(f"/api/tasks/{scenario.succeeded.id}/retry", headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert body["status"] == 409
    assert "only a failed task can be retried" in body["error"]
    body = check(api.post("/api/tasks/nope/retry", headers=AUTH), "/api/tasks/{id}/retry", "post")
    assert body["status"] == 404


def test_cancel(api: Client, scenario: Scenario):
    body = check(api.post(f"/api/tasks/{scenario.scheduled.id}/cancel", headers=AUTH), "/api/tasks/{id}/cancel", "post")
    assert body == {"id": scenario.scheduled.id, "cancelled": True}
    assert scenario.scheduled.state is State.CANCELLED
    body = check(api.post(f"/api/tasks/{scenario.running.id}/cancel", headers=AUTH), "/api/tasks/{id}/cancel", "post")
    assert body["status"] == 409
    assert scenario.running.state is State.RUNNING


def test_purge_forgets_finished_tasks_only(api: Client, scenario: Scenario):
    body = check(api.post("/api/purge", headers=AUTH), "/api/purge", "post")
    assert body == {"purged": 3}
    remaining = check(api.get("/api/tasks", headers=AUTH), "/api/tasks")
    assert {t["id"] for t in remaining["tasks"]} == {scenario.running.id, scenario.scheduled.id}
    assert scenario.runner.get(scenario.failed.id) is None


def test_read_only_dashboard_refuses_actions(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        for path in (f"/api/tasks/{scenario.scheduled.id}/cancel", "/api/purge"):
            reply = client.post(path)
            assert reply.status in (401, 403)
            assert re.search("authentication required|read-only", reply.json()["error"])
        assert scenario.scheduled.state is State.SCHEDULED
        assert scenario.runner.get(scenario.failed.id) is not None
        assert client.get("/api/stats").status == 200  # reading needs no token without one configured


def test_http_source_reads_and_acts_like_the_live_source(api: Client, scenario: Scenario):
    from offload.dashboard import ActionError, HttpSource, LiveSource, SourceUnavailableError, TaskQuery

    remote = HttpSource(f"http://{api.default_host}/", token=TOKEN)
    local = LiveSource(scenario.runner)
    assert remote.tasks(TaskQuery(limit=10)) == local.tasks(TaskQuery(limit=10))
    assert remote.task(scenario.failed.id) == local.task(scenario.failed.id)
    assert remote.names() == local.names()
    assert remote.task("nope") is None
    with pytest.raises(ActionError, match="only a queued, scheduled or retrying task") as info:
        remote.cancel(scenario.succeeded.id)
    assert info.value.status == 409
    assert remote.cancel(scenario.scheduled.id) is True
    new_id = remote.retry(scenario.failed.id)
    new = scenario.runner.get(new_id)
    assert new is not None and new.wait(WAIT)
    assert remote.purge() == 5
    with pytest.raises(SourceUnavailableError, match="HTTP 401"):
        HttpSource(f"http://{api.default_host}/", token="wrong-wrong-wrong-wrong").overview()
    with pytest.raises(ValueError, match="must start with http"):
        HttpSource("ftp://example.com")
