"""``offload dashboard``: serve the web dashboard (loopback by default)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

from .._errors import ConfigurationError
from ._source import TOKEN_ENV


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("dashboard", help="serve the web dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (8765; 0 picks a free one)")
    parser.add_argument("--token", help=f"enables login and actions (default: ${TOKEN_ENV}); 16+ characters")
    parser.add_argument("--read-only", action="store_true", help="refuse actions even with a token")
    parser.add_argument(
        "--allowed-host", action="append", dest="allowed_hosts", metavar="NAME", help="accepted Host header (repeat)"
    )
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..dashboard import DashboardApp, serve

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        server = serve(
            host=args.host,
            port=args.port,
            token=token,
            insecure=args.insecure,
            allowed_hosts=args.allowed_hosts,
            read_only=args.read_only,
            background=True,
        )
    except (ConfigurationError, OSError) as exc:
        print(f"offload dashboard: {exc}", file=sys.stderr)
        return 2
    read_only = not isinstance(server.app, DashboardApp) or server.app.guard.read_only
    mode = "read-only" if read_only else "actions enabled"
    print(f"offload dashboard on {server.url} ({mode}; Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
