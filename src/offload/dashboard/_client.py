"""A :class:`~offload.dashboard.Source` that reads another process's dashboard over its JSON API.

This is what ``offload status/tasks/show --url`` use: the live runner lives in
the application's process, so a separate command reaches it through the
dashboard that process serves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from ._model import (
    NameStats,
    Overview,
    RunningTask,
    TaskDetail,
    TaskPage,
    TaskQuery,
    detail_from_json,
    overview_from_json,
    page_from_json,
)
from ._source import ActionError


class SourceUnavailableError(Exception):
    """The dashboard could not be reached, or refused the request."""


class HttpSource:
    """Reads (and acts through) a dashboard's ``/api/``.

    Args:
        url: the dashboard's base URL, e.g. ``http://127.0.0.1:8765/``.
        token: its token, sent as ``Authorization: Bearer``.
        timeout: seconds per request.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"dashboard URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @property
    def description(self) -> str:
        return f"dashboard at {self.url}"

    def _call(self, method: str, path: str, *, missing_ok: bool = False) -> Any:
        request = urllib.request.Request(self.url + path, method=method, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                message = json.load(exc).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            if missing_ok and exc.code == 404:
                return None
            if method == "POST" and exc.code in (404, 409):
                raise ActionError(str(message), exc.code) from None
            raise SourceUnavailableError(f"{self.url}{path}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailableError(f"cannot reach the dashboard at {self.url}: {reason}") from None

    def overview(self) -> Overview:
        return overview_from_json(self._call("GET", "/api/stats"))

    def tasks(self, query: TaskQuery) -> TaskPage:
        params = {
            "state": None if query.state is None else query.state.value,
            "name": query.name,
            "queue": query.queue,
            "since": query.since,
            "until": query.until,
            "offset": query.offset,
            "limit": query.limit,
        }
        encoded = urlencode({k: v for k, v in params.items() if v is not None})
        return page_from_json(self._call("GET", f"/api/tasks?{encoded}"))

    def task(self, task_id: str) -> TaskDetail | None:
        data = self._call("GET", f"/api/tasks/{quote(task_id, safe='')}", missing_ok=True)
        return None if data is None else detail_from_json(data)

    def names(self) -> list[NameStats]:
        return [NameStats(**n) for n in self._call("GET", "/api/names")["names"]]

    def running(self) -> list[RunningTask]:
        return [RunningTask(**r) for r in self._call("GET", "/api/running")["running"]]

    def retry(self, task_id: str) -> str:
        return str(self._call("POST", f"/api/tasks/{quote(task_id, safe='')}/retry")["id"])

    def cancel(self, task_id: str) -> bool:
        return bool(self._call("POST", f"/api/tasks/{quote(task_id, safe='')}/cancel")["cancelled"])

    def purge(self) -> int:
        return int(self._call("POST", "/api/purge")["purged"])
