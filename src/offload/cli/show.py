"""``offload show ID``: one task with its arguments (secrets masked), attempts and error."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import JournalError
from ..dashboard import SourceUnavailableError
from . import _render
from ._source import add_source_arguments, close_source, source_from_args


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("show", help="show one task in detail", description=__doc__)
    parser.add_argument("id", help="the task's id")
    add_source_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        source = source_from_args(args)
        try:
            detail = source.task(args.id)
        finally:
            close_source(source)
    except (SourceUnavailableError, JournalError) as exc:
        print(f"offload show: {exc}", file=sys.stderr)
        return 1
    if detail is None:
        print(f"offload show: no task with id {args.id!r} (unknown, or no longer in the history)", file=sys.stderr)
        return 1
    print(_render.dump_json(detail) if args.json else _render.detail(detail))
    return 0
