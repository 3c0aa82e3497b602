"""``offload status``: the dashboard's overview as a table, once or refreshing (``--watch``).

Reads a journal (``--journal PATH``: every process sharing it), a running
dashboard (``--url``), or this process's runner.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._errors import JournalError
from ..dashboard import Source, SourceUnavailableError
from . import _render
from ._source import add_source_arguments, close_source, source_from_args

_CLEAR = "\x1b[H\x1b[2J"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("status", help="show counts, queue depth and workers", description=__doc__)
    add_source_arguments(parser)
    parser.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    parser.add_argument("--iterations", type=int, default=None, help=argparse.SUPPRESS)  # for tests
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        print(f"offload status: --interval must be > 0 seconds, got {args.interval}", file=sys.stderr)
        return 2
    try:
        source = source_from_args(args)
    except SourceUnavailableError as exc:
        print(f"offload status: {exc}", file=sys.stderr)
        return 1
    try:
        return _show(source, args)
    finally:
        close_source(source)


def _show(source: Source, args: argparse.Namespace) -> int:
    shown = 0
    try:
        while True:
            try:
                overview = source.overview()
            except (SourceUnavailableError, JournalError) as exc:
                print(f"offload status: {exc}", file=sys.stderr)
                return 1
            text = _render.dump_json(overview) if args.json else _render.overview(overview)
            if args.watch and sys.stdout.isatty():
                sys.stdout.write(_CLEAR)
            print(text, flush=True)
            shown += 1
            if not args.watch or (args.iterations is not None and shown >= args.iterations):
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
