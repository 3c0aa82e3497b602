"""The dashboard mounted under a path in Flask (werkzeug's DispatcherMiddleware) and FastAPI (a2wsgi).

What docs/monitoring.md shows, run for real: the host framework's own check
(``authorize=``) guards pages and actions, links carry the mount prefix, and
actions still need the page's CSRF token.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from flask import Flask, session
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from offload.dashboard import JournalSource, create_app

from .test_dashboard_journal import Written, write_journal

STAFF = {"X-Staff": "yes"}


def staff_only(environ: dict[str, Any]) -> bool:
    """Stands for the framework's session check (e.g. flask_login's current_user.is_staff)."""
    return environ.get("HTTP_X_STAFF") == "yes"


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "the page embeds no CSRF token"
    return match.group(1)


def test_flask_dispatcher_middleware(tmp_path: Path) -> None:
    written = write_journal(tmp_path)
    shop = Flask("shop")
    shop.secret_key = "test-secret-key-0123456789"

    @shop.get("/")
    def home() -> str:
        return "the shop"

    @shop.get("/login")
    def login() -> str:
        session["is_staff"] = True
        return "logged in"

    def staff_session(environ: dict[str, Any]) -> bool:  # as in docs/monitoring.md
        with shop.request_context(environ):
            return bool(session.get("is_staff"))

    with JournalSource(written.path) as source:
        dashboard = create_app(source, authorize=staff_session, allowed_hosts=["localhost"])
        shop.wsgi_app = DispatcherMiddleware(shop.wsgi_app, {"/offload": dashboard})  # type: ignore[method-assign]
        client = shop.test_client()
        assert client.get("/").text == "the shop"
        assert client.get("/offload/api/stats").status_code == 401
        assert client.get("/login").text == "logged in"
        stats = client.get("/offload/api/stats")
        assert stats.status_code == 200
        assert stats.json is not None and stats.json["counts"]["failed"] == 2
        page = client.get("/offload/tasks")
        assert page.status_code == 200
        assert f'href="/offload/tasks/{written.failed}"' in page.text
        assert client.post("/offload/api/purge").status_code == 403  # no CSRF token
        purged = client.post("/offload/api/purge", headers={"X-CSRF-Token": csrf_of(page.text)})
        assert purged.status_code == 200
        assert purged.json == {"purged": 3}


def test_fastapi_mount_through_a2wsgi(tmp_path: Path) -> None:
    written = write_journal(tmp_path)
    api = FastAPI()

    @api.get("/")
    def home() -> dict[str, str]:
        return {"app": "shop"}

    with JournalSource(written.path) as source:
        dashboard = create_app(source, authorize=staff_only, allowed_hosts=["testserver"])
        mounted = WSGIMiddleware(dashboard)  # type: ignore[arg-type]
        api.mount("/offload", mounted)  # type: ignore[arg-type]
        try:
            asyncio.run(_drive_fastapi(api, written))
        finally:
            mounted.executor.shutdown(wait=True)  # its worker threads


async def _drive_fastapi(api: FastAPI, written: Written) -> None:
    # httpx's ASGI transport: the real ASGI app, in this thread's event loop, no server.
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).json() == {"app": "shop"}
        assert (await client.get("/offload/api/stats")).status_code == 401
        assert (await client.get("/offload/api/stats", headers=STAFF)).json()["counts"]["scheduled"] == 1
        page = await client.get(f"/offload/tasks/{written.scheduled}", headers=STAFF)
        assert page.status_code == 200
        assert f'action="/offload/tasks/{written.scheduled}/cancel"' in page.text
        cancel = f"/offload/api/tasks/{written.scheduled}/cancel"
        assert (await client.post(cancel, headers=STAFF)).status_code == 403  # no CSRF token
        done = await client.post(cancel, headers={**STAFF, "X-CSRF-Token": csrf_of(page.text)})
        assert done.json() == {"id": written.scheduled, "cancelled": True}
