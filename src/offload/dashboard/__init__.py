"""The offload dashboard: a WSGI app with HTML pages, a JSON API and ``/metrics``.

    from offload.dashboard import create_app, serve

    app = create_app(runner, token=os.environ["OFFLOAD_DASHBOARD_TOKEN"])  # mount anywhere
    serve(runner, port=8765)                                              # or serve it standalone
    create_app(JournalSource("offload.sqlite3"), token=...)               # every process on a journal

Stdlib only; every asset ships in this package. Read-only unless a token (or a
framework's ``authorize`` check) is configured; see ``docs/dashboard.md``.
"""

from ._app import ROUTES, DashboardApp, Route, create_app
from ._client import HttpSource, SourceUnavailableError
from ._journal_source import JournalSource, open_journal
from ._metrics import OffloadCollector
from ._model import (
    MAX_PAGE_SIZE,
    AttemptRecord,
    Bucket,
    ErrorRecord,
    NameStats,
    Overview,
    RunningTask,
    TaskDetail,
    TaskPage,
    TaskQuery,
    TaskSummary,
)
from ._server import DashboardServer, serve
from ._source import ActionError, LiveSource, Source

__all__ = [
    "MAX_PAGE_SIZE",
    "ROUTES",
    "ActionError",
    "AttemptRecord",
    "Bucket",
    "DashboardApp",
    "DashboardServer",
    "ErrorRecord",
    "HttpSource",
    "JournalSource",
    "LiveSource",
    "NameStats",
    "OffloadCollector",
    "Overview",
    "Route",
    "RunningTask",
    "Source",
    "SourceUnavailableError",
    "TaskDetail",
    "TaskPage",
    "TaskQuery",
    "TaskSummary",
    "create_app",
    "open_journal",
    "serve",
]
