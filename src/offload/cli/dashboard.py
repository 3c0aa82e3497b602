"""``offload dashboard``: serve the web dashboard (loopback by default).

With ``--journal PATH`` it shows every process sharing that journal (and keeps
working after they stopped); without, the runner of this process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

from .._errors import ConfigurationError
from ._source import TOKEN_ENV, add_journal_argument, close_source, journal_path, open_journal_source


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("dashboard", help="serve the web dashboard", description=__doc__)
    add_journal_argument(parser)
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
    from ..dashboard import DashboardApp, JournalSource, SourceUnavailableError, serve

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    path = journal_path(args)
    source: JournalSource | None = None
    try:
        source = None if path is None else open_journal_source(path)
        server = serve(
            host=args.host,
            port=args.port,
            token=token,
            insecure=args.insecure,
            allowed_hosts=args.allowed_hosts,
            read_only=args.read_only,
            background=True,
            source=source,
        )
    except SourceUnavailableError as exc:
        print(f"offload dashboard: {exc}", file=sys.stderr)
        return 1
    except (ConfigurationError, OSError) as exc:
        if source is not None:
            close_source(source)
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
        if source is not None:
            close_source(source)
    return 0
