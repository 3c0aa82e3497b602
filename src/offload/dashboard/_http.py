"""The little HTTP the dashboard needs on top of WSGI: a request and a response."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

# Bodies the dashboard accepts: a login form or an empty action POST.
MAX_BODY = 16 * 1024


class HTTPError(Exception):
    """Ends a request with ``status`` and a message shown to the client (escaped)."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class Request:
    """A WSGI environ with the parts the dashboard reads, parsed once."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.script_name: str = environ.get("SCRIPT_NAME", "").rstrip("/")
        self.path: str = environ.get("PATH_INFO", "") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        self._form: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """A request header by its HTTP name, e.g. ``"Sec-Fetch-Site"``."""
        key = name.upper().replace("-", "_")
        value = self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)
        return value if value else None

    def cookie(self, name: str) -> str | None:
        raw = self.environ.get("HTTP_COOKIE")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(name)
        except CookieError:
            return None
        return None if morsel is None else morsel.value

    @property
    def scheme(self) -> str:
        return str(self.environ.get("wsgi.url_scheme", "http"))

    @property
    def host(self) -> str:
        """The ``Host`` header (or the server's name and port without one)."""
        host = self.environ.get("HTTP_HOST")
        if host:
            return str(host)
        return f"{self.environ.get('SERVER_NAME', '')}:{self.environ.get('SERVER_PORT', '')}"

    def form(self) -> dict[str, str]:
        """The url-encoded body of a POST (bounded), last value per field."""
        if self._form is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise HTTPError(400, "bad Content-Length") from None
            if length > MAX_BODY:
                raise HTTPError(413, f"request body over {MAX_BODY} bytes")
            body = self.environ["wsgi.input"].read(length) if length > 0 else b""
            content_type = (self.header("Content-Type") or "").split(";")[0].strip()
            if body and content_type != "application/x-www-form-urlencoded":
                self._form = {}
            else:
                parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                self._form = {k: v[-1] for k, v in parsed.items()}
        return self._form

    def url(self, path: str) -> str:
        """An absolute path under the app's mount point."""
        return self.script_name + path


@dataclass
class Response:
    """Status, headers and body; security headers are added by the app."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    cacheable: bool = False

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(status, body, "application/json")


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", "text/plain; charset=utf-8", [("Location", location), *(headers or [])])
