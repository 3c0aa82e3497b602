"""The dashboard's guards: Host allowlist, authentication, same-origin checks,
response headers, and the refusal to bind off loopback without auth.

Authentication is either a token (``Authorization: Bearer TOKEN`` for API
clients, or a cookie set by the login form for browsers) or, when the app is
mounted inside a web framework, the framework's own check passed as
``authorize(environ) -> bool``. Without either the app is read-only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import ConfigurationError
from ._http import HTTPError, Request

log = logging.getLogger("offload.dashboard")

SESSION_COOKIE = "offload_dashboard"

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]

Authorize = Callable[[dict[str, Any]], bool]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, has_auth: bool, insecure: bool) -> None:
    """Refuse to serve off loopback without authentication, unless ``insecure``.

    Raises:
        ConfigurationError: ``host`` is not loopback, no token is set and
            ``insecure`` is false.
    """
    if is_loopback(host) or has_auth:
        return
    if not insecure:
        raise ConfigurationError(
            f"dashboard: refusing to listen on {host!r} without authentication: anyone who can reach it "
            "could read task arguments and tracebacks; set a token (--token or OFFLOAD_DASHBOARD_TOKEN), "
            "bind to 127.0.0.1, or pass --insecure if the network is trusted"
        )
    log.warning("dashboard: serving on %s WITHOUT authentication (--insecure); it shows task arguments", host)


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header, lower-cased, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """Decides, per request, whether it may proceed.

    Args:
        token: shared secret for actions and, when set, for every page.
        authorize: the host framework's check, ``authorize(environ) -> bool``.
        allowed_hosts: host names accepted in the ``Host`` header; ``"*"`` accepts any.
        read_only: refuse every action even to authenticated users.
    """

    def __init__(
        self,
        *,
        token: str | None,
        authorize: Authorize | None,
        allowed_hosts: Iterable[str],
        read_only: bool,
        csrf: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        if csrf is not None and (authorize is None or not callable(csrf)):
            raise ConfigurationError("dashboard: csrf= (the host framework's token) needs authorize= and a callable")
        self._framework_csrf = csrf
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigurationError(
                "dashboard: token must be a string of at least 16 characters (use secrets.token_urlsafe())"
            )
        if authorize is not None and not callable(authorize):
            raise ConfigurationError(f"dashboard: authorize must be a callable(environ) -> bool, got {authorize!r}")
        hosts = [allowed_hosts] if isinstance(allowed_hosts, str) else list(allowed_hosts)
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigurationError(f"dashboard: allowed_hosts must be non-empty host names, got {allowed_hosts!r}")
        self.token = token
        self.authorize = authorize
        self.allowed_hosts = frozenset(host_name(h) if h != "*" else h for h in hosts)
        self.read_only = read_only or (token is None and authorize is None)
        key = (token or "").encode()
        self._session = hmac.new(key, b"offload-dashboard-session", hashlib.sha256).hexdigest() if token else None
        # Random per app: with framework auth (no token) a derived value would be guessable.
        self._csrf = secrets.token_hex(16)

    @property
    def auth_required(self) -> bool:
        """True when reading needs credentials too (a token or a framework check is set)."""
        return self.token is not None or self.authorize is not None

    @property
    def session_value(self) -> str | None:
        """The login cookie's value (derived from the token, not the token itself)."""
        return self._session

    def csrf_token(self, request: Request) -> str:
        """The token pages embed: the host framework's when mounted with ``csrf=``, else the app's."""
        if self._framework_csrf is not None:
            return self._framework_csrf(request.environ)
        return self._csrf

    def check_host(self, request: Request) -> None:
        if "*" in self.allowed_hosts:
            return
        if host_name(request.host) not in self.allowed_hosts:
            raise HTTPError(400, "Host header not allowed (see the dashboard's allowed_hosts)")

    def token_matches(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def bearer(self, request: Request) -> bool:
        """True if the request carries the right ``Authorization: Bearer`` token."""
        header = request.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def authenticated(self, request: Request) -> bool:
        if self.bearer(request):
            return True
        cookie = request.cookie(SESSION_COOKIE)
        if self._session is not None and cookie is not None and hmac.compare_digest(cookie, self._session):
            return True
        return self.authorize is not None and bool(self.authorize(request.environ))

    def check_read(self, request: Request) -> None:
        if self.auth_required and not self.authenticated(request):
            raise HTTPError(401, "authentication required", [("WWW-Authenticate", 'Bearer realm="offload"')])

    def check_action(self, request: Request) -> None:
        """A POST action: authenticated, not read-only, same origin (unless bearer)."""
        if not self.authenticated(request):
            raise HTTPError(401, "authentication required", [("WWW-Authenticate", 'Bearer realm="offload"')])
        if self.read_only:
            raise HTTPError(403, "the dashboard is read-only (configure a token to enable actions)")
        if self.bearer(request):
            return  # not sent by a browser on its own: cross-site requests cannot set this header
        self.check_same_origin(request)
        if self._framework_csrf is not None:
            return  # the host framework checked its token before calling the app
        sent = request.header("X-CSRF-Token") or request.form().get("csrf", "")
        if not hmac.compare_digest(sent.encode(), self._csrf.encode()):
            raise HTTPError(403, "missing or wrong CSRF token")

    def check_same_origin(self, request: Request) -> None:
        site = request.header("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = request.header("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise HTTPError(403, "cross-origin request refused (Origin does not match Host)")
