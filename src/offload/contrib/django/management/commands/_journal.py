"""What the offload management commands share: the journal path and the CLI they wrap."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser


def add_journal_argument(parser: CommandParser) -> None:
    parser.add_argument("--journal", metavar="PATH", help="the journal file (default: OFFLOAD['JOURNAL'])")


def journal_path(options: dict[str, Any]) -> str:
    path = options.get("journal") or (getattr(settings, "OFFLOAD", None) or {}).get("JOURNAL")
    if not path:
        raise CommandError("no journal: set OFFLOAD['JOURNAL'] in settings or pass --journal PATH")
    if not isinstance(path, str):
        raise CommandError(f"OFFLOAD['JOURNAL'] must be a file path for this command, got {path!r}")
    return path


def run_cli(*argv: str) -> None:
    """Run ``offload ARGV...``; a non-zero status becomes a CommandError (exit status 1)."""
    from ..... import cli

    status = cli.main(list(argv))
    if status:
        raise CommandError(f"offload {argv[0]} {argv[1] if len(argv) > 1 else ''} failed (status {status})")
