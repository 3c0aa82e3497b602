"""``manage.py offload_status``: counts per state of the journal's tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ._journal import add_journal_argument, journal_path, run_cli


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser: CommandParser) -> None:
        add_journal_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run_cli("journal", "stats", "--journal", journal_path(options))
