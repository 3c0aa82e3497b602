"""The Django app: reads ``settings.OFFLOAD`` once Django is ready."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class OffloadConfig(AppConfig):
    name = "offload.contrib.django"
    label = "offload"
    verbose_name = "offload background tasks"

    def ready(self) -> None:
        from . import checks

        checks.register()
        configure_from_settings()


def configure_from_settings() -> None:
    """Apply ``settings.OFFLOAD``: the default runner's options, connection hygiene, on-commit.

    Configure only: the default runner (and its threads) starts with the first
    task, so runserver's reloader parent and a gunicorn ``--preload`` master that
    enqueue nothing start nothing, and a ``fork()`` never inherits a running pool.
    """
    from ... import _default
    from . import conf, connections, transactions

    options = conf.load(getattr(settings, "OFFLOAD", None))
    _default.configure(**options.runner_options)
    connections.install() if options.close_connections else connections.uninstall()
    transactions.install(options.on_commit_database) if options.on_commit else transactions.uninstall()
