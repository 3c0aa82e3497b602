"""The ``offload`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload",
        description="offload: background tasks with the convenience of threading.Thread.",
    )
    parser.add_argument("--version", action="version", version=f"offload {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import dashboard, demo, journal, show, status, tasks, worker

    demo.add_parser(commands)
    for module in (dashboard, status, tasks, show, worker, journal):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``offload`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    status: int = args.handler(args)
    return status
