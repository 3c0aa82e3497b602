"""How the monitoring commands choose what to read: the :class:`~offload.dashboard.Source` seam.

- ``--journal PATH`` (or ``$OFFLOAD_JOURNAL``): the journal file, so every
  process that shares it, also after they stopped (:class:`~offload.dashboard.JournalSource`);
- ``--url URL``: a running dashboard's JSON API (the application's process
  serves it; :class:`~offload.dashboard.HttpSource`);
- neither: the runner of this very process, which is only useful when the
  commands are called from Python (``main([...])``) inside an application.
"""

from __future__ import annotations

import argparse
import os
import sys

from .._errors import JournalError
from ..dashboard import HttpSource, JournalSource, LiveSource, Source, SourceUnavailableError

TOKEN_ENV = "OFFLOAD_DASHBOARD_TOKEN"
JOURNAL_ENV = "OFFLOAD_JOURNAL"


def add_journal_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument(
        "--journal",
        metavar="PATH",
        help=f"read this journal file: every process sharing it, also after they stopped (default: ${JOURNAL_ENV})",
    )


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help="read the dashboard served at this URL (its JSON API), e.g. http://127.0.0.1:8765/"
    )
    add_journal_argument(where)
    parser.add_argument("--token", help=f"the dashboard's token (default: ${TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (stable keys)")


def journal_path(args: argparse.Namespace) -> str | None:
    """``--journal``, else ``$OFFLOAD_JOURNAL`` unless another source was asked for."""
    if args.journal:
        return str(args.journal)
    if getattr(args, "url", None):
        return None
    return os.environ.get(JOURNAL_ENV) or None


def open_journal_source(path: str) -> JournalSource:
    """A :class:`JournalSource` on an existing file; :class:`SourceUnavailableError` says why not."""
    try:
        return JournalSource(path)
    except JournalError as exc:
        raise SourceUnavailableError(str(exc)) from None


def source_from_args(args: argparse.Namespace) -> Source:
    """The source the options name; raises :class:`SourceUnavailableError` (e.g. no journal at the path)."""
    journal = journal_path(args)
    if journal:
        return open_journal_source(journal)
    if args.url:
        return HttpSource(args.url, token=args.token or os.environ.get(TOKEN_ENV) or None)
    if not args.json:
        print(
            "note: no --url or --journal given, showing the runner of this process; use --journal PATH "
            "to read a journal, or --url to read the dashboard of a running application",
            file=sys.stderr,
        )
    return LiveSource()


def close_source(source: Source) -> None:
    """Close what :func:`source_from_args` opened (a journal connection)."""
    if isinstance(source, JournalSource):
        source.close()
