"""``manage.py offload_purge --older-than 7d [--state failed]``: delete old finished tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ._journal import add_journal_argument, journal_path, run_cli


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser: CommandParser) -> None:
        add_journal_argument(parser)
        parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 7d, 12h, 30m")
        parser.add_argument("--state", help="only rows in this final state (default: every finished one)")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = ["journal", "purge", "--journal", journal_path(options), "--older-than", options["older_than"]]
        if options["state"]:
            argv += ["--state", options["state"]]
        run_cli(*argv)
