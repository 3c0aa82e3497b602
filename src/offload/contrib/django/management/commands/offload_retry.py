"""``manage.py offload_retry ID``: queue a failed, cancelled or interrupted task again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ._journal import add_journal_argument, journal_path, run_cli


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="the task id")
        add_journal_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run_cli("journal", "retry", "--journal", journal_path(options), options["id"])
