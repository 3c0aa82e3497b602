"""The dashboard's guards, route by route, over real HTTP on loopback."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from offload import ConfigurationError, Runner, State
from offload.dashboard import ROUTES, create_app, serve
from offload.dashboard._security import Guard, check_bind, host_name, is_loopback
from offload.testing import FakeClock

from .dashboard_support import TOKEN, XSS, Client, Scenario, populate, running_dashboard

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def scenario(runner: Runner, fake_clock: FakeClock) -> Iterator[Scenario]:
    s = populate(runner, fake_clock)
    yield s
    s.release.set()


def concrete(path: str, scenario: Scenario) -> str:
    return path.replace("{id}", scenario.scheduled.id).replace("{name}", "dashboard.js")


def state_of(runner: Runner) -> tuple[object, ...]:
    stats = runner.stats()
    tasks = sorted((h.id, h.state.value) for h in runner._snapshot())
    return (stats.submitted, stats.cancelled, stats.queued, stats.scheduled, tuple(tasks))


def test_every_post_route_without_credentials_is_refused(scenario: Scenario):
    posts = [r for r in ROUTES if r.method == "POST" and r.kind != "login"]
    assert len(posts) == 6
    before = state_of(scenario.runner)
    for options in ({"token": TOKEN}, {}):  # with a token configured, and read-only
        with running_dashboard(scenario.runner, **options) as client:
            for route in posts:
                reply = client.post(concrete(route.path, scenario), body="csrf=x")
                assert reply.status in (401, 403), (route, options, reply.status)
    assert state_of(scenario.runner) == before


def test_read_only_refuses_actions_even_when_authenticated(scenario: Scenario):
    with running_dashboard(scenario.runner, token=TOKEN, read_only=True) as client:
        reply = client.post(f"/api/tasks/{scenario.scheduled.id}/cancel", headers=AUTH)
        assert reply.status == 403
        assert "read-only" in reply.json()["error"]
    assert scenario.scheduled.state is State.SCHEDULED


def test_no_get_route_changes_anything(scenario: Scenario):
    gets = [r for r in ROUTES if r.method == "GET"]
    before = state_of(scenario.runner)
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        for route in gets:
            for task in (scenario.failed, scenario.scheduled, scenario.running):
                path = route.path.replace("{id}", task.id).replace("{name}", "dashboard.css")
                assert client.get(path, headers=AUTH).status in (200, 404), path
    assert state_of(scenario.runner) == before


def test_with_a_token_every_read_needs_it(scenario: Scenario):
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        for route in ROUTES:
            if route.method != "GET":
                continue
            path = concrete(route.path, scenario)
            reply = client.get(path)
            if route.kind in ("static", "login"):
                assert reply.status == 200, path
            else:
                assert reply.status == 401, path
                assert reply.headers["www-authenticate"].startswith("Bearer")
                assert scenario.scheduled.id not in reply.text
        assert client.get("/api/stats", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status == 401


def test_unknown_paths_and_methods(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        assert client.get("/nope").status == 404
        reply = client.request("PUT", "/api/stats")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET"
        reply = client.request("HEAD", "/")
        assert (reply.status, reply.body) == (200, b"")
        assert client.get("/static/../_app.py").status == 404
        assert client.get("/static/nope.js").status == 404


def test_security_headers_on_every_response(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        for path in ["/", "/tasks", "/api/stats", "/static/dashboard.js", "/nope", f"/tasks/{scenario.failed.id}"]:
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"


def test_no_inline_script_or_style_in_pages(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        for path in ["/", "/tasks", "/names", "/running", f"/tasks/{scenario.failed.id}", "/login"]:
            text = client.get(path).text
            assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/dashboard.js" defer>']
            assert " style=" not in text
            assert "<style" not in text
            assert not re.search(r"<[^>]*\son[a-z]+\s*=", text), path  # no inline event handlers


def test_bad_host_is_refused(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        reply = client.get("/", headers={"Host": "evil.example"})
        assert reply.status == 400
        assert "Host header not allowed" in reply.text
        assert client.get("/api/stats", headers={"Host": "evil.example:8765"}).status == 400
        for good in ("localhost", "127.0.0.1:1234", "[::1]:80"):
            assert client.get("/api/stats", headers={"Host": good}).status == 200, good


def test_allowed_hosts_option(scenario: Scenario):
    with running_dashboard(scenario.runner, allowed_hosts=["tasks.example.com"]) as client:
        assert client.get("/", headers={"Host": "tasks.example.com"}).status == 200
        assert client.get("/", headers={"Host": "localhost"}).status == 400


def test_xss_in_arguments_and_errors_comes_back_escaped(scenario: Scenario):
    with running_dashboard(scenario.runner) as client:
        for path in [f"/tasks/{scenario.failed.id}", "/tasks", "/names", f"/tasks?name={XSS}"]:
            text = client.get(path).text
            assert "<script>alert" not in text, path
        detail = client.get(f"/tasks/{scenario.failed.id}").text
        assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in detail
        assert "hunter2" not in detail
        attribute = client.get("/tasks?" + urlencode({"name": '"><svg onload=alert(1)>'})).text
        assert '"><svg' not in attribute
        assert "&quot;&gt;&lt;svg onload=alert(1)&gt;" in attribute


def test_login_sets_a_strict_http_only_cookie_and_actions_need_csrf(scenario: Scenario):
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        assert client.post("/login", body="token=wrong").status == 401
        reply = client.post("/login", body=f"token={TOKEN}", headers={"Sec-Fetch-Site": "same-origin"})
        assert reply.status == 303
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        session = {"Cookie": cookie.split(";")[0]}
        page = client.get(f"/tasks/{scenario.scheduled.id}", headers=session)
        assert page.status == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        cancel = f"/tasks/{scenario.scheduled.id}/cancel"

        assert client.post(cancel, headers=session, body="").status == 403  # no CSRF token
        assert client.post(cancel, headers=session, body="csrf=0000").status == 403
        cross = {**session, "Sec-Fetch-Site": "cross-site"}
        assert client.post(cancel, headers=cross, body=f"csrf={csrf[1]}").status == 403
        other_origin = {**session, "Origin": "http://evil.example"}
        assert client.post(cancel, headers=other_origin, body=f"csrf={csrf[1]}").status == 403
        assert scenario.scheduled.state is State.SCHEDULED

        origin = f"http://{client.default_host}"
        ok = client.post(
            cancel, headers={**session, "Origin": origin, "Sec-Fetch-Site": "same-origin"}, body=f"csrf={csrf[1]}"
        )
        assert ok.status == 303
        assert ok.headers["location"] == f"/tasks/{scenario.scheduled.id}"
        assert scenario.scheduled.state is State.CANCELLED


def test_cross_site_login_is_refused(scenario: Scenario):
    with running_dashboard(scenario.runner, token=TOKEN) as client:
        reply = client.post("/login", body=f"token={TOKEN}", headers={"Sec-Fetch-Site": "cross-site"})
        assert reply.status == 403
        assert "set-cookie" not in reply.headers


def test_framework_authorize_check(scenario: Scenario):
    allowed: list[bool] = [False]
    app = create_app(runner=scenario.runner, authorize=lambda environ: allowed[0])
    with serve(app=app, port=0, background=True) as server:
        client = Client(server.url)
        assert client.get("/api/stats").status == 401
        allowed[0] = True
        assert client.get("/api/stats").status == 200
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/").text)
        assert csrf is not None
        reply = client.post("/api/purge", headers={"X-CSRF-Token": csrf[1], "Sec-Fetch-Site": "same-origin"})
        assert reply.status == 200
        assert client.post("/api/purge").status == 403  # authorised, but no CSRF token


def test_binding_off_loopback_needs_auth_or_insecure(runner: Runner, caplog: pytest.LogCaptureFixture):
    with pytest.raises(ConfigurationError, match=r"refusing to listen on '0\.0\.0\.0' without authentication"):
        serve(runner, host="0.0.0.0", port=0, background=True, allowed_hosts=["localhost"])
    with pytest.raises(ConfigurationError, match="needs allowed_hosts"):
        serve(runner, host="0.0.0.0", port=0, background=True, token=TOKEN)
    with caplog.at_level(logging.WARNING, logger="offload.dashboard"):
        server = serve(runner, host="0.0.0.0", port=0, background=True, insecure=True, allowed_hosts=["localhost"])
    server.stop()
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)
    check_bind("127.0.0.1", has_auth=False, insecure=False)
    check_bind("10.0.0.1", has_auth=True, insecure=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_host_name_parsing():
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("::1") == "::1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": "short"}, "at least 16 characters"),
        ({"authorize": "yes"}, "authorize must be a callable"),
        ({"allowed_hosts": []}, "allowed_hosts must be non-empty"),
    ],
)
def test_bad_guard_options(options: dict[str, object], message: str):
    base: dict[str, object] = {"token": None, "authorize": None, "allowed_hosts": ["localhost"], "read_only": False}
    with pytest.raises(ConfigurationError, match=message):
        Guard(**{**base, **options})  # type: ignore[arg-type]
