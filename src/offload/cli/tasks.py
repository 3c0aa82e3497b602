"""``offload tasks``: recent tasks, newest first, filtered by state, name or queue."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import JournalError
from .._handle import State
from ..dashboard import MAX_PAGE_SIZE, SourceUnavailableError, TaskQuery
from . import _render
from ._source import add_source_arguments, close_source, source_from_args


def _limit(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PAGE_SIZE}, got {value}")
    return value


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("tasks", help="list recent tasks", description=__doc__)
    add_source_arguments(parser)
    parser.add_argument("--state", choices=[s.value for s in State], help="only tasks in this state")
    parser.add_argument("--name", help="only tasks with exactly this name")
    parser.add_argument("--queue", help="only tasks of this queue")
    parser.add_argument("--limit", type=_limit, default=20, help=f"most tasks shown (1 to {MAX_PAGE_SIZE}; 20)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    query = TaskQuery(
        state=None if args.state is None else State(args.state), name=args.name, queue=args.queue, limit=args.limit
    )
    try:
        source = source_from_args(args)
        try:
            page = source.tasks(query)
        finally:
            close_source(source)
    except (SourceUnavailableError, JournalError) as exc:
        print(f"offload tasks: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(_render.dump_json(page))
    else:
        print(_render.task_rows(page.tasks))
        print(f"({len(page.tasks)} of {page.total} matching)")
    return 0
