"""The dashboard for staff, mounted in a Django site with Django's auth and CSRF.

    # urls.py
    path("offload/", include("offload.contrib.django.urls")),

Who may see it: staff users, or users with ``OFFLOAD["DASHBOARD_PERMISSION"]``
(e.g. ``"shop.view_tasks"``) when that is set. Anonymous users are sent to
``LOGIN_URL``; others get 403. Actions (retry, cancel, purge) are POSTs checked
by Django's CSRF middleware logic, with the token the dashboard's pages embed.
It shows this process's default runner.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.views.decorators.csrf import csrf_exempt

from ... import _default
from . import conf

_CSRF_KEY = "offload.django.csrf_token"
_apps: dict[int, Any] = {}  # one dashboard app per default runner


def _app() -> Any:
    from ...dashboard import create_app

    runner = _default.default_runner()
    app = _apps.get(id(runner))
    if app is None:
        _apps.clear()  # the old runner was shut down and replaced
        app = _apps[id(runner)] = create_app(
            runner=runner,
            authorize=lambda environ: True,  # the view below let the request in
            allowed_hosts=["*"],  # Django checks ALLOWED_HOSTS
            csrf=lambda environ: str(environ[_CSRF_KEY]),
        )
    return app


def _may_see(request: HttpRequest) -> bool:
    user = request.user
    permission = conf.load(getattr(settings, "OFFLOAD", None)).dashboard_permission
    if permission is not None:
        return bool(user.has_perm(permission))
    return bool(user.is_active and user.is_staff)


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """Django's own CSRF verification, fed the token the dashboard sends."""
    sent = request.META.get("HTTP_X_CSRF_TOKEN") or request.POST.get("csrf", "")
    request.META[settings.CSRF_HEADER_NAME] = sent
    middleware = CsrfViewMiddleware(lambda r: HttpResponse())
    response: HttpResponse | None = middleware.process_view(request, None, (), {})
    return response


@csrf_exempt  # checked in the view, with the dashboard's field names
def dashboard_view(request: HttpRequest, path: str = "") -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not _may_see(request):
        return HttpResponseForbidden("The offload dashboard is for staff.")
    body = request.body  # read before request.POST so the WSGI app can read it again
    if request.method == "POST":
        failure = _csrf_failure(request)
        if failure is not None:
            return failure
    environ = dict(request.META)
    mount = request.path[: len(request.path) - len(path)] if path else request.path
    environ["SCRIPT_NAME"] = mount.rstrip("/")
    environ["PATH_INFO"] = "/" + path
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ[_CSRF_KEY] = get_token(request)
    return _call(_app(), environ)


def _call(app: Any, environ: dict[str, Any]) -> HttpResponse:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    chunks: Iterable[bytes] = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    response = HttpResponse(content, status=int(captured["status"].split(" ", 1)[0]))
    for name, value in captured["headers"]:
        response[name] = value
    return response
