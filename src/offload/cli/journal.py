"""``offload journal``: look into and manage a journal file.

    offload journal stats --journal PATH
    offload journal list --journal PATH [--state failed] [--name TASK] [--limit 50]
    offload journal show --journal PATH ID
    offload journal retry --journal PATH ID
    offload journal purge --journal PATH [--state failed] --older-than 7d
    offload journal check --journal PATH
    offload journal repair --journal PATH

``--journal`` defaults to the OFFLOAD_JOURNAL environment variable.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

from .._errors import JournalError
from ..journal import FINISHED, STATES, Filter, SQLiteJournal, TaskRecord
from ..journal._intake import intake_dir

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("journal", help="inspect and manage a journal file", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("--journal", default=os.environ.get("OFFLOAD_JOURNAL"), metavar="PATH",
                         help="the journal file (default: $OFFLOAD_JOURNAL)")  # fmt: skip
        sub.set_defaults(handler=run, action=name)
        return sub

    action("stats", "rows per state, owners, file sizes")
    listing = action("list", "recent rows, newest first")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--name")
    listing.add_argument("--limit", type=int, default=50)
    action("show", "every field of one row").add_argument("id")
    action("retry", "queue a finished row again (failed, cancelled, interrupted)").add_argument("id")
    purge = action("purge", "delete finished rows")
    purge.add_argument("--state", choices=FINISHED, help="only rows in this state (default: every finished one)")
    purge.add_argument("--older-than", type=duration, required=True, metavar="AGE", help="e.g. 7d, 12h, 30m")
    action("check", "PRAGMA integrity_check")
    action("repair", "move a damaged journal aside and copy its readable rows into a new one")


def run(args: argparse.Namespace) -> int:
    path = args.journal
    if not path:
        print("offload journal: give --journal PATH (or set OFFLOAD_JOURNAL)", file=sys.stderr)
        return 2
    if not os.path.exists(path):
        print(f"offload journal: no journal at {path}", file=sys.stderr)
        return 1
    if args.action == "repair":
        return _repair(path)
    try:
        journal = SQLiteJournal(path, check_on_open=args.action != "check")
    except JournalError as exc:
        print(f"offload journal: {exc}", file=sys.stderr)
        return 1
    try:
        handler = {"stats": _stats, "list": _list, "show": _show, "retry": _retry, "purge": _purge, "check": _check}
        return handler[args.action](journal, args)
    except JournalError as exc:
        print(f"offload journal: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _stats(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    print(f"journal {journal.path} (schema {journal.schema_version()})")
    for suffix in ("", "-wal"):
        size = os.path.getsize(journal.path + suffix) if os.path.exists(journal.path + suffix) else 0
        print(f"  file{suffix or ''}: {size:,} bytes")
    intake = intake_dir(journal.path)
    segments = [e for e in os.scandir(intake) if not e.name.endswith(".notice")] if os.path.isdir(intake) else []
    print(f"  intake logs: {len(segments)} segment file(s), {sum(e.stat().st_size for e in segments):,} bytes")
    for state, n in journal.counts().items():
        print(f"  {state:<12} {n:>10,}")
    now = time.time()
    for owner in journal.owners():
        age = f"{now - owner.heartbeat:.1f}s ago" if owner.heartbeat else "never"
        print(f"  owner {owner.owner}: heartbeat {age}")
    return 0


def _list(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    rows = journal.list_tasks(Filter(state=args.state, name=args.name, limit=args.limit))
    print(f"{'id':<32}  {'state':<11}  {'att':>3}  {'created (UTC)':<19}  {'reason':<13}  name")
    for row in rows:
        created = _when(row.created_at)
        print(f"{row.id:<32}  {row.state:<11}  {row.attempts:>3}  {created:<19}  {row.reason or '-':<13}  {row.name}")
    return 0


def _show(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    row = journal.fetch(args.id)
    if row is None:
        print(f"offload journal: no task {args.id} in {journal.path}", file=sys.stderr)
        return 1
    _print_record(row)
    return 0


def _print_record(row: TaskRecord) -> None:
    fields = [
        ("id", row.id), ("name", row.name), ("state", row.state), ("reason", row.reason or "-"),
        ("attempts", row.attempts), ("interrupted", row.interrupted), ("at_most_once", row.at_most_once),
        ("queue", row.queue), ("priority", row.priority), ("owner", row.owner or "-"),
        ("created", _when(row.created_at)), ("run_at", _when(row.run_at)), ("started", _when(row.started_at)),
        ("finished", _when(row.finished_at)), ("arguments", row.payload), ("result", row.result or "-"),
    ]  # fmt: skip
    for name, value in fields:
        print(f"{name:>12}: {value}")
    if row.error is not None:
        print(f"{'error':>12}: {row.error.type}: {row.error.message}")
        if row.error.traceback:
            print(row.error.traceback.rstrip())


def _retry(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    if journal.requeue(args.id, time.time()):
        print(f"task {args.id} queued again; a runner or `offload worker` with this journal will run it")
        return 0
    row = journal.fetch(args.id)
    why = "no such task" if row is None else f"it is {row.state}, not finished"
    print(f"offload journal: cannot retry {args.id}: {why}", file=sys.stderr)
    return 1


def _purge(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    states = (args.state,) if args.state else FINISHED
    deleted = journal.prune(time.time(), older_than=args.older_than, states=states)
    print(f"deleted {deleted:,} {'/'.join(states)} row(s) finished more than {args.older_than:g}s ago")
    return 0


def _check(journal: SQLiteJournal, args: argparse.Namespace) -> int:
    problems = journal.check()
    if problems == ["ok"]:
        print(f"journal {journal.path}: ok")
        return 0
    print(f"journal {journal.path} is damaged:")
    for problem in problems[:50]:
        print(f"  {problem}")
    print(f"`offload journal repair --journal {journal.path}` moves it aside and copies the readable rows")
    return 1


def _repair(path: str) -> int:
    from ..journal._repair import repair

    aside, copied, lost = repair(path)
    print(f"moved the damaged journal to {aside}")
    if lost < 0:
        print(f"nothing could be read from it; {path} is a new, empty journal")
    else:
        print(f"copied {copied:,} row(s) into a new journal at {path}; {lost:,} row(s) could not be read")
    return 0
