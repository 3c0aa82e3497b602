"""Checks on task arguments, made at enqueue time in the caller's thread.

Request-bound objects (a Django ``HttpRequest``, ``request.user`` which is a
``SimpleLazyObject``, Flask/werkzeug ``LocalProxy`` objects such as ``request``,
``g`` or ``current_user``, a Starlette ``Request``) stop being valid once the
response is sent, which is exactly when a background task runs. They are
recognised by class name along the type's MRO, so neither Django nor Flask is
imported, and the verdict is cached per type, so the check costs one dict
lookup per argument on the hot path.

Database rows (a Django model instance or queryset) are not bound to the request,
but a copy taken at enqueue is stale by the time the task runs, and the usual
mistake is passing ``request.user``'s row where its primary key belongs. In
memory mode they pass with a :class:`~offload.PayloadWarning` (turn it into an
error with a warnings filter); a runner that stores arguments (a journal)
accepts only JSON and refuses them outright.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from ._errors import PayloadError, PayloadWarning

# (module, qualname) of a class along the MRO -> (what it is, how to fix it)
_REQUEST_BOUND: dict[tuple[str, str], tuple[str, str]] = {
    ("django.http.request", "HttpRequest"): (
        "a Django HttpRequest",
        "pass the values the task needs (e.g. request.user.pk, request.GET['id'])",
    ),
    ("django.utils.functional", "LazyObject"): (
        "a Django lazy object such as request.user",
        "pass the primary key instead (e.g. request.user.pk) and load it in the task",
    ),
    ("werkzeug.local", "LocalProxy"): (
        "a werkzeug LocalProxy such as Flask's request, g or current_user",
        "pass the values the task needs (e.g. current_user.id, request.args['id'])",
    ),
    ("werkzeug.sansio.request", "Request"): (
        "a werkzeug/Flask Request",
        "pass the values the task needs (e.g. request.args['id'])",
    ),
    ("starlette.requests", "HTTPConnection"): (
        "a Starlette/FastAPI Request",
        "pass the values the task needs (e.g. request.query_params['id'])",
    ),
}

# Passed with a warning: (what it is, how to fix it).
_STALE_PRONE: dict[tuple[str, str], tuple[str, str]] = {
    ("django.db.models.base", "Model"): (
        "a Django model instance",
        "pass its primary key (e.g. order.pk) and load the row in the task, so it sees current data",
    ),
    ("django.db.models.query", "QuerySet"): (
        "a Django QuerySet",
        "pass the primary keys or the filter values and build the queryset in the task",
    ),
}
_WARN = "warn"

# Types seen before: None means "fine", otherwise the problem. Plain types are
# pre-seeded. Bounded: classes made on the fly cannot grow it without limit.
_verdicts: dict[type, tuple[str, str, str] | None] = dict.fromkeys(
    (int, float, str, bytes, bool, type(None), list, tuple, dict, set, frozenset, complex, bytearray)
)
_MAX_VERDICTS = 4096
_verdicts_lock = threading.Lock()


def _classify(cls: type) -> tuple[str, str, str] | None:
    verdict = None
    for base in cls.__mro__:
        key = (base.__module__, base.__qualname__)
        if key in _REQUEST_BOUND:
            verdict = (*_REQUEST_BOUND[key], "raise")
            break
        if key in _STALE_PRONE:
            verdict = (*_STALE_PRONE[key], _WARN)
            break
    with _verdicts_lock:
        if len(_verdicts) >= _MAX_VERDICTS:
            _verdicts.clear()
        _verdicts[cls] = verdict
    return verdict


def _problem(value: Any) -> tuple[str, str, str] | None:
    cls = type(value)  # type(), not value.__class__: a LocalProxy lies about __class__
    try:
        return _verdicts[cls]
    except KeyError:
        return _classify(cls)


def check_request_bound(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], strict: bool = False) -> None:
    """Raise ``PayloadError`` if an argument is bound to the current web request.

    A database row (model instance, queryset) passes with a ``PayloadWarning``,
    unless ``strict`` (a runner that stores arguments): then it is refused too,
    with the same fix in the message.
    """
    verdicts = _verdicts
    for value in args:
        if type(value) not in verdicts or verdicts[type(value)] is not None:
            return _raise_if_bound(task_name, args, kwargs, strict)  # looks at every argument
    for value in kwargs.values():
        if type(value) not in verdicts or verdicts[type(value)] is not None:
            return _raise_if_bound(task_name, args, kwargs, strict)
    return None


def _raise_if_bound(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], strict: bool) -> None:
    places = [(f"args[{i}]", v) for i, v in enumerate(args)] + [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for where, value in places:
        problem = _problem(value)
        if problem is not None and problem[2] == _WARN and strict:
            what, fix, _ = problem
            raise PayloadError(
                f"task {task_name!r}: argument {where} is {what}, which a journal cannot store (it keeps JSON); {fix}"
            )
        if problem is not None and problem[2] == _WARN:
            what, fix, _ = problem
            # stacklevel 5: the caller of submit()/delay()/apply_async()
            warnings.warn(f"task {task_name!r}: argument {where} is {what}; {fix}", PayloadWarning, stacklevel=5)
        elif problem is not None:
            what, fix, _ = problem
            raise PayloadError(
                f"task {task_name!r}: argument {where} is {what}, which is only valid during the request "
                f"that created it and would be stale or broken when the task runs; {fix}"
            )
