"""Serving the dashboard standalone with the stdlib's ``wsgiref`` (one thread per request)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .._errors import ConfigurationError
from .._runner import Runner
from ._app import DashboardApp, create_app
from ._security import LOOPBACK_HOSTS, check_bind, is_loopback
from ._source import Source

log = logging.getLogger("offload.dashboard")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

_WILDCARDS = ("", "0.0.0.0", "::")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = True


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class DashboardServer:
    """A dashboard listening on a socket.

    Attributes:
        app: the WSGI application.
        url: where it answers, e.g. ``http://127.0.0.1:8765/``.
    """

    def __init__(self, app: WSGIApp, host: str, port: int, *, owns_app: bool = False) -> None:
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self.app = app
        self._owns_app = owns_app
        self._server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        self.port: int = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called (from another thread) or Ctrl-C."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> DashboardServer:
        """Serve in a background daemon thread; return self."""
        self._thread = threading.Thread(target=self.serve_forever, name="offload-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop serving and close the socket; waits for requests in progress."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()
        if self._owns_app and isinstance(self.app, DashboardApp):
            self.app.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _hosts_for(host: str, allowed_hosts: Iterable[str] | None) -> list[str]:
    if allowed_hosts is not None:
        return list(allowed_hosts)
    if host in _WILDCARDS:
        raise ConfigurationError(
            f"dashboard: listening on all interfaces ({host or 'all'!r}) needs allowed_hosts "
            "(--allowed-host NAME): the host names clients will use, checked against the Host header"
        )
    return [*LOOPBACK_HOSTS] if is_loopback(host) else [*LOOPBACK_HOSTS, host]


def serve(
    runner: Runner | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    insecure: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    read_only: bool = False,
    background: bool = False,
    app: WSGIApp | None = None,
    source: Source | None = None,
) -> DashboardServer:
    """Serve the dashboard of ``runner`` (the default runner if ``None``).

    Args:
        runner: the runner to show.
        host: interface to listen on; loopback by default. Any other address
            needs a ``token`` or ``insecure=True`` (logged at WARNING).
        port: TCP port; 0 picks a free one (see the returned ``url``).
        token: enables authentication and actions; see :func:`create_app`.
        insecure: allow a non-loopback ``host`` without a token.
        allowed_hosts: accepted ``Host`` header names; loopback names (and
            ``host``) by default.
        read_only: refuse actions even with a token.
        background: serve in a daemon thread and return at once (call
            ``stop()`` on the result); otherwise block until Ctrl-C.
        app: a prebuilt application (e.g. from :func:`create_app`, or it mounted in
            another WSGI app) instead of one built from the options.
        source: what to show instead of ``runner``, e.g. a
            :class:`~offload.dashboard.JournalSource` (every process sharing a journal).

    Raises:
        ConfigurationError: refused binding (see above) or a bad option.
    """
    check_bind(host, has_auth=token is not None, insecure=insecure)
    owns_app = app is None
    if app is None:
        app = create_app(
            source, runner=runner, token=token, allowed_hosts=_hosts_for(host, allowed_hosts), read_only=read_only
        )
    server = DashboardServer(app, host, port, owns_app=owns_app)
    if background:
        return server.start()
    log.info("offload dashboard on %s (Ctrl-C to stop)", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return server
