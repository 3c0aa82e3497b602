"""``manage.py offload_worker``: run the journal's tasks in this process, with Django set up.

Imports the ``tasks`` module of every installed app (as Celery's autodiscovery
does), so the tasks the web processes enqueue are registered here, then serves
the journal like ``offload worker``: SIGTERM or Ctrl-C drains.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.module_loading import autodiscover_modules

from ._journal import add_journal_argument, journal_path, run_cli


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser: CommandParser) -> None:
        add_journal_argument(parser)
        parser.add_argument("--workers", type=int, help="worker threads (default: OFFLOAD['WORKERS'] or cpu + 4)")
        parser.add_argument("--drain-timeout", type=float, default=20.0, metavar="SECONDS")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        path = journal_path(options)
        autodiscover_modules("tasks")
        workers = options["workers"] or (getattr(settings, "OFFLOAD", None) or {}).get("WORKERS")
        argv = ["worker", "--journal", path, "--drain-timeout", str(options["drain_timeout"])]
        if workers:
            argv += ["--workers", str(workers)]
        run_cli(*argv)
