"""The JSON API under ``/api/``; its description is ``openapi.json`` beside this file."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import TypeVar

from ._http import HTTPError, Request, Response, json_response
from ._model import to_json
from ._query import task_query
from ._source import ActionError, Source

T = TypeVar("T")


def openapi(source: Source, request: Request) -> Response:
    body = resources.files(__package__).joinpath("openapi.json").read_bytes()
    return Response(200, body, "application/json", cacheable=True)


def stats(source: Source, request: Request) -> Response:
    return json_response(to_json(source.overview()))


def tasks(source: Source, request: Request) -> Response:
    return json_response(to_json(source.tasks(task_query(request.query))))


def task(source: Source, request: Request, task_id: str) -> Response:
    detail = source.task(task_id)
    if detail is None:
        raise HTTPError(404, f"no task with id {task_id!r} (unknown, or no longer in the history)")
    return json_response(to_json(detail))


def names(source: Source, request: Request) -> Response:
    return json_response({"names": to_json(source.names())})


def running(source: Source, request: Request) -> Response:
    return json_response({"running": to_json(source.running())})


def retry(source: Source, request: Request, task_id: str) -> Response:
    new_id = _act(lambda: source.retry(task_id))
    return json_response({"id": new_id, "retry_of": task_id}, 201)


def cancel(source: Source, request: Request, task_id: str) -> Response:
    cancelled = _act(lambda: source.cancel(task_id))
    if not cancelled:
        raise HTTPError(409, f"task {task_id} could not be cancelled: it started meanwhile")
    return json_response({"id": task_id, "cancelled": True})


def purge(source: Source, request: Request) -> Response:
    return json_response({"purged": _act(source.purge)})


def _act(action: Callable[[], T]) -> T:
    try:
        return action()
    except ActionError as exc:
        raise HTTPError(exc.status, str(exc)) from None
