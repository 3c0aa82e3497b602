"""How the monitoring commands choose what to read: the :class:`~offload.dashboard.Source` seam.

Today: ``--url`` reads a running dashboard's JSON API (the application's
process serves it); without it, the runner of this very process, which is only
useful when the commands are called from Python (``main([...])``) inside an
application. A journal-backed source (``--journal PATH``) plugs in here.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..dashboard import HttpSource, LiveSource, Source

TOKEN_ENV = "OFFLOAD_DASHBOARD_TOKEN"


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="read the dashboard served at this URL (its JSON API), e.g. http://127.0.0.1:8765/"
    )
    parser.add_argument("--token", help=f"the dashboard's token (default: ${TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (stable keys)")


def source_from_args(args: argparse.Namespace) -> Source:
    if args.url:
        return HttpSource(args.url, token=args.token or os.environ.get(TOKEN_ENV) or None)
    if not args.json:
        print(
            "note: no --url given, showing the runner of this process; "
            "use --url to read the dashboard of a running application",
            file=sys.stderr,
        )
    return LiveSource()
