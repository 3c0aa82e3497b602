"""The WSGI application: routing, the guards in front of every route, error pages.

Routes are one table (``ROUTES``) so that tests can enumerate them: every
``POST`` is an action (authenticated, same-origin, refused in read-only mode),
every ``GET`` only reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from . import _api, _views
from ._html import Markup, page, tag
from ._http import HTTPError, Request, Response, json_response, redirect
from ._security import LOOPBACK_HOSTS, SECURITY_HEADERS, SESSION_COOKIE, Authorize, Guard
from ._source import ActionError, LiveSource, Source

log = logging.getLogger("offload.dashboard")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}

_ID = r"(?P<task_id>[A-Za-z0-9_.:-]{1,128})"


@dataclass(frozen=True)
class Route:
    """``method path`` and what serves it; ``kind`` is page, api, action, static, login or metrics."""

    method: str
    path: str
    kind: str
    handler: str

    @property
    def regex(self) -> re.Pattern[str]:
        pattern = re.escape(self.path).replace(re.escape("{id}"), _ID).replace(re.escape("{name}"), r"(?P<name>[^/]+)")
        return re.compile(pattern + r"\Z")


ROUTES = (
    Route("GET", "/", "page", "overview"),
    Route("GET", "/tasks", "page", "tasks"),
    Route("GET", "/tasks/{id}", "page", "task_detail"),
    Route("GET", "/names", "page", "names"),
    Route("GET", "/running", "page", "running"),
    Route("GET", "/login", "login", "login_form"),
    Route("POST", "/login", "login", "login_submit"),
    Route("POST", "/logout", "login", "logout"),
    Route("POST", "/tasks/{id}/retry", "action", "page_retry"),
    Route("POST", "/tasks/{id}/cancel", "action", "page_cancel"),
    Route("POST", "/purge", "action", "page_purge"),
    Route("GET", "/static/{name}", "static", "static"),
    Route("GET", "/metrics", "metrics", "metrics"),
    Route("GET", "/api/openapi.json", "api", "openapi"),
    Route("GET", "/api/stats", "api", "stats"),
    Route("GET", "/api/tasks", "api", "tasks"),
    Route("GET", "/api/tasks/{id}", "api", "task"),
    Route("GET", "/api/names", "api", "names"),
    Route("GET", "/api/running", "api", "running"),
    Route("POST", "/api/tasks/{id}/retry", "api-action", "retry"),
    Route("POST", "/api/tasks/{id}/cancel", "api-action", "cancel"),
    Route("POST", "/api/purge", "api-action", "purge"),
)

_COMPILED = [(route, route.regex) for route in ROUTES]


class DashboardApp:
    """The dashboard as a WSGI application; mount it anywhere (it honours ``SCRIPT_NAME``).

    Build it with :func:`offload.dashboard.create_app`.
    """

    def __init__(self, source: Source, guard: Guard, *, metrics: Any = None) -> None:
        self.source = source
        self.guard = guard
        self.metrics = metrics
        self.routes = ROUTES

    def close(self) -> None:
        """Remove the metrics hook this app added to its runner (if any)."""
        if self.metrics is not None:
            self.metrics.collector.close()
            self.metrics = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            self.guard.check_host(request)
            response = self._dispatch(request)
        except HTTPError as exc:
            response = self._error(request, exc)
        except Exception:
            log.exception("dashboard: error serving %s %s", request.method, request.path)
            response = self._error(request, HTTPError(500, "internal error; see the server's log"))
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "max-age=300" if response.cacheable else "no-store"),
            *SECURITY_HEADERS,
            *response.headers,
        ]
        start_response(response.status_line, headers)
        return [] if request.method == "HEAD" else [response.body]

    # -- routing ------------------------------------------------------------

    def _dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        allowed = []
        for route, regex in _COMPILED:
            match = regex.match(request.path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            return self._serve(route, request, match.groupdict())
        if allowed:
            raise HTTPError(405, f"method {request.method} not allowed here", [("Allow", ", ".join(allowed))])
        raise HTTPError(404, "no such page")

    def _serve(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        guard = self.guard
        kind = route.kind
        if kind == "static":
            return _static(params["name"])
        if kind == "login":
            return getattr(self, route.handler)(request)  # type: ignore[no-any-return]
        if kind in ("action", "api-action"):
            guard.check_action(request)
        else:
            guard.check_read(request)
        if kind == "metrics":
            return self._metrics()
        if kind.startswith("api"):
            handler = getattr(_api, route.handler)
            return handler(self.source, request, *params.values())  # type: ignore[no-any-return]
        if kind == "action":
            return getattr(self, route.handler)(request, *params.values())  # type: ignore[no-any-return]
        ctx = self._context(request)
        title, body = getattr(_views, route.handler)(self.source, ctx, *params.values())
        return self._page(ctx, title, body, route.path)

    def _context(self, request: Request) -> _views.Context:
        return _views.Context(request, csrf=self.guard.csrf_token(request), actions=not self.guard.read_only)

    def _page(self, ctx: _views.Context, title: str, body: Markup, current: str, status: int = 200) -> Response:
        html = page(
            title,
            body,
            prefix=ctx.prefix,
            current=current,
            source=self.source.description,
            csrf=ctx.csrf,
        )
        return Response(status, html)

    def _error(self, request: Request, exc: HTTPError) -> Response:
        if request.path.startswith("/api/") or request.path == "/metrics":
            response = json_response({"error": exc.message, "status": exc.status}, exc.status)
        elif exc.status == 401:
            ctx = self._context(request)
            title, body = _views.login(ctx, exc.message)
            response = self._page(ctx, title, body, "/login", 401)
        else:
            ctx = self._context(request)
            body = Markup(tag("h1", f"{exc.status}") + tag("p", exc.message, class_="error"))
            response = self._page(ctx, f"Error {exc.status}", body, "", exc.status)
        response.headers.extend(exc.headers)
        return response

    # -- login ----------------------------------------------------------------

    def login_form(self, request: Request) -> Response:
        ctx = self._context(request)
        title, body = _views.login(ctx)
        return self._page(ctx, title, body, "/login")

    def login_submit(self, request: Request) -> Response:
        guard = self.guard
        guard.check_same_origin(request)
        form = request.form()
        if guard.session_value is None:
            raise HTTPError(404, "no token is configured: there is nothing to log in to")
        if not guard.token_matches(form.get("token", "")):
            log.warning("dashboard: failed login from %s", request.environ.get("REMOTE_ADDR", "?"))
            raise HTTPError(401, "wrong token")
        return redirect(request.url("/"), [("Set-Cookie", self._cookie(request, guard.session_value))])

    def logout(self, request: Request) -> Response:
        self.guard.check_same_origin(request)
        return redirect(request.url("/login"), [("Set-Cookie", self._cookie(request, "", max_age=0))])

    @staticmethod
    def _cookie(request: Request, value: str, max_age: int | None = None) -> str:
        parts = [f"{SESSION_COOKIE}={value}", f"Path={request.script_name or '/'}", "HttpOnly", "SameSite=Strict"]
        if request.scheme == "https":
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    # -- actions from the HTML pages ---------------------------------------------

    def page_retry(self, request: Request, task_id: str) -> Response:
        new_id = _act(lambda: self.source.retry(task_id))
        return redirect(request.url(f"/tasks/{new_id}"))

    def page_cancel(self, request: Request, task_id: str) -> Response:
        _act(lambda: self.source.cancel(task_id))
        return redirect(request.url(f"/tasks/{task_id}"))

    def page_purge(self, request: Request) -> Response:
        _act(self.source.purge)
        return redirect(request.url("/tasks"))

    def _metrics(self) -> Response:
        if self.metrics is None:
            raise HTTPError(404, "metrics need prometheus_client: pip install 'offload[prometheus]'")
        body, content_type = self.metrics.exposition()
        return Response(200, body, content_type)


def _act(action: Callable[[], object]) -> object:
    try:
        return action()
    except ActionError as exc:
        raise HTTPError(exc.status, str(exc)) from None


def _static(name: str) -> Response:
    content_type = STATIC.get(name)
    if content_type is None:
        raise HTTPError(404, "no such file")
    body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    return Response(200, body, content_type, cacheable=True)


def create_app(
    source: Source | None = None,
    *,
    runner: Any = None,
    token: str | None = None,
    authorize: Authorize | None = None,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    read_only: bool = False,
    metrics: bool | None = None,
    csrf: Callable[[dict[str, Any]], str] | None = None,
) -> DashboardApp:
    """Build the dashboard's WSGI application.

    Args:
        source: what to show; by default a :class:`LiveSource` of ``runner``.
        runner: the runner to show (the default runner when neither is given).
        token: a secret of at least 16 characters; when set, every page and API
            call needs it (``Authorization: Bearer`` or the login form) and
            actions are enabled.
        authorize: when mounted in a web framework, ``authorize(environ) -> bool``
            says whether the request's user may see and act (e.g. a staff check).
        allowed_hosts: host names accepted in the ``Host`` header; ``["*"]`` to
            leave the check to the host framework.
        read_only: refuse actions even to authenticated users. Without a token
            or ``authorize`` the dashboard is always read-only.
        metrics: serve ``/metrics``; by default when ``prometheus_client`` is
            installed and the source is a live runner.
        csrf: with ``authorize``, the host framework's CSRF token for a request
            (``csrf(environ) -> str``). Pages embed it (form field ``csrf``, header
            ``X-CSRF-Token``) and the framework must verify it on POSTs before
            calling the app, which then skips its own token check (the same-origin
            check stays). The Django integration does this with Django's CSRF.
    """
    from .._errors import ConfigurationError

    if source is None:
        source = LiveSource(runner)
    elif runner is not None:
        raise ConfigurationError("create_app(): give source or runner, not both")
    if not isinstance(source, Source):
        raise ConfigurationError(f"create_app(): source must implement offload.dashboard.Source, got {source!r}")
    guard = Guard(token=token, authorize=authorize, allowed_hosts=allowed_hosts, read_only=read_only, csrf=csrf)
    collector = None
    if metrics is not False and isinstance(source, LiveSource):
        from ._metrics import prometheus_available

        if prometheus_available():
            from ._metrics import Exposition

            collector = Exposition(source.runner)
        elif metrics:
            raise ConfigurationError(
                "create_app(metrics=True) needs prometheus_client: pip install 'offload[prometheus]'"
            )
    return DashboardApp(source, guard, metrics=collector)
