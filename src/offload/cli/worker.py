"""``offload worker``: a standalone process that runs the work kept in a journal.

For apps that enqueue from scripts, cron jobs or management commands, or that
want tasks executed outside the web process. SIGTERM (or Ctrl-C) drains like
the runner: running tasks may finish within ``--drain-timeout``, waiting ones
stay in the journal for the next start.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any

from .._errors import OffloadError
from .._runner import Runner
from .._task import registered_tasks


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "worker", help="run the tasks kept in a journal (standalone process)", description=__doc__
    )
    parser.add_argument("--journal", required=True, metavar="PATH", help="the SQLite journal file")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module declaring tasks (repeatable), e.g. myapp.tasks",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default: min(32, cpu + 4))")
    parser.add_argument("--drain-timeout", type=float, default=20.0, metavar="SECONDS")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--import myapp.tasks` from the project directory
    for module in args.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an ImportError, or the module's own error at import
            print(f"offload worker: cannot import {module!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    try:
        runner = Runner(workers=args.workers, journal=args.journal, drain_timeout=args.drain_timeout,
                        name="offload-worker")  # fmt: skip
    except OffloadError as exc:
        print(f"offload worker: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    names = ", ".join(sorted(registered_tasks())) or "none"
    print(f"offload worker {os.getpid()}: journal {args.journal}; tasks: {names}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print(f"offload worker {os.getpid()}: draining", file=sys.stderr, flush=True)
        runner.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
