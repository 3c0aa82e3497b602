"""The journal's payload codec: strict JSON, with a documented encoding for a few types.

What a task's arguments and result become on disk (see docs/journal.md):

- ``None``, ``bool``, ``int``, ``str``, finite ``float``, ``list`` and ``dict`` with
  ``str`` keys are plain JSON.
- Four more types round-trip exactly, each as a one-key object whose key starts
  with ``__offload_``:

  ========================  =====================================================
  ``tuple``                 ``{"__offload_tuple__": [items...]}``
  ``bytes``                 ``{"__offload_bytes__": "<base64>"}``
  ``datetime.datetime``     ``{"__offload_datetime__": "<ISO 8601>"}`` (naive or aware)
  ``datetime.date``         ``{"__offload_date__": "YYYY-MM-DD"}``
  ========================  =====================================================

- Everything else is refused at enqueue with :class:`~offload.PayloadError`
  naming the argument: NaN and infinities, sets, ``bytearray``, objects, dict keys
  that are not strings, and dicts that use an ``__offload_*`` key themselves
  (they would be ambiguous).

Decoding never creates anything but these types: nothing is ever unpickled or
imported from the journal. A payload that does not decode raises
:class:`PayloadDecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from ._errors import PayloadError

#: Default size limit of an encoded payload, in bytes of UTF-8.
DEFAULT_MAX_PAYLOAD = 1_000_000

_TUPLE = "__offload_tuple__"
_BYTES = "__offload_bytes__"
_DATETIME = "__offload_datetime__"
_DATE = "__offload_date__"
_TAG_PREFIX = "__offload_"

_SCALARS = (str, int, bool, type(None))
_NO_ARGUMENTS = "[[],{}]"
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False).encode


class PayloadDecodeError(ValueError):
    """A journal payload is not valid offload JSON."""


def _convert(value: Any, where: str, depth: int) -> Any:
    """``value`` made of plain JSON types, tagging the extra ones; raise on anything else."""
    cls = type(value)
    if cls in _SCALARS:
        return value
    if cls is float:
        if math.isfinite(value):
            return value
        raise ValueError(f"{where} is {value!r}; NaN and infinities are not JSON (use None or a string)")
    if depth > 100:
        raise ValueError(f"{where} is nested more than 100 levels deep")
    if cls is list:
        return [_convert(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if cls is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{where} has the key {key!r}; JSON object keys must be str")
            if key.startswith(_TAG_PREFIX):
                raise ValueError(f"{where} has the key {key!r}; keys starting with {_TAG_PREFIX!r} are reserved")
            out[key] = _convert(item, f"{where}[{key!r}]", depth + 1)
        return out
    if cls is tuple:
        return {_TUPLE: [_convert(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]}
    if cls is bytes:
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if cls is datetime:
        return {_DATETIME: value.isoformat()}
    if cls is date:
        return {_DATE: value.isoformat()}
    raise ValueError(
        f"{where} is a {cls.__module__}.{cls.__qualname__}, which the journal cannot store; pass JSON values "
        "(str, int, float, bool, None, list, dict) or tuple, bytes, datetime, date — e.g. an id instead of an object"
    )


def encode_payload(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> str:
    """The JSON text stored for a call's arguments; raise ``PayloadError`` if it cannot be.

    Args:
        task_name: named in error messages.
        args: positional arguments.
        kwargs: keyword arguments.
        limit: most bytes the encoded text may take.
    """
    if not args and not kwargs:
        return _NO_ARGUMENTS
    try:
        plain_args = [_convert(value, f"args[{i}]", 0) for i, value in enumerate(args)]
        plain_kwargs = {key: _convert(value, f"kwargs[{key!r}]", 0) for key, value in kwargs.items()}
    except ValueError as exc:
        raise PayloadError(f"task {task_name!r}: argument {exc}") from None
    text = _dumps([plain_args, plain_kwargs])
    if not text.isascii() and not _is_utf8(text):
        where = next((w for w, v in _arguments(args, kwargs) if not _is_utf8(_dumps(_convert(v, w, 0)))), "?")
        raise PayloadError(
            f"task {task_name!r}: argument {where} holds a lone surrogate, which is not Unicode text and "
            "cannot be stored as UTF-8 (decode bytes with errors='replace', or pass them as bytes)"
        )
    check_size(task_name, "arguments", text, limit)
    return text


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield from ((f"args[{i}]", value) for i, value in enumerate(args))
    yield from ((f"kwargs[{key!r}]", {key: value}) for key, value in kwargs.items())  # the key too


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_value(value: Any) -> str:
    """The JSON text of one value (a task's result); raise ``ValueError`` if it cannot be."""
    text = _dumps(_convert(value, "the result", 0))
    if not text.isascii() and not _is_utf8(text):
        raise ValueError("the result holds a lone surrogate, which cannot be stored as UTF-8")
    return text


def encode_result(value: Any, limit: int) -> str | None:
    """The JSON text of a task's result to record, or None: no value, not JSON, or over ``limit`` characters.

    The handle keeps the value itself; a store only records it when it can.
    """
    if value is None:
        return None
    try:
        text = encode_value(value)
    except ValueError:
        return None
    return text if len(text) <= limit else None


def check_size(task_name: str, what: str, text: str, limit: int) -> None:
    """Raise ``PayloadError`` if ``text`` takes more than ``limit`` bytes of UTF-8."""
    # len(text) <= size <= 4 * len(text): only measure when it could be over.
    if len(text) * 4 > limit:
        size = len(text.encode("utf-8"))
        if size > limit:
            raise PayloadError(
                f"task {task_name!r}: the encoded {what} take {size:,} bytes, over the journal's limit of "
                f"{limit:,} bytes (max_payload); store large data elsewhere and pass a key or a path"
            )


def _tagged(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        for key in obj:
            if key.startswith(_TAG_PREFIX):
                raise PayloadDecodeError(f"reserved key {key!r} in an object with other keys")
        return obj
    key, value = next(iter(obj.items()))
    if not key.startswith(_TAG_PREFIX):
        return obj
    try:
        if key == _TUPLE and type(value) is list:
            return tuple(value)
        if key == _BYTES and type(value) is str:
            return base64.b64decode(value.encode("ascii"), validate=True)
        if key == _DATETIME and type(value) is str:
            return datetime.fromisoformat(value)
        if key == _DATE and type(value) is str:
            return date.fromisoformat(value)
    except (ValueError, binascii.Error) as exc:
        raise PayloadDecodeError(f"bad {key} value {value!r}: {exc}") from None
    raise PayloadDecodeError(f"unknown or malformed tag {key!r}")


def _reject_constant(name: str) -> Any:
    raise PayloadDecodeError(f"{name} is not allowed in a payload")


_loads = json.JSONDecoder(object_hook=_tagged, parse_constant=_reject_constant).decode


def decode_value(text: object) -> Any:
    """The value stored by :func:`encode_value`; raise :class:`PayloadDecodeError`."""
    if not isinstance(text, str):
        raise PayloadDecodeError(f"payload is a {type(text).__name__}, not JSON text")
    try:
        return _loads(text)
    except PayloadDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise PayloadDecodeError(f"not valid JSON: {exc}") from None


def decode_payload(text: object) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` stored by :func:`encode_payload`; raise :class:`PayloadDecodeError`."""
    value = decode_value(text)
    if type(value) is not list or len(value) != 2 or type(value[0]) is not list or type(value[1]) is not dict:
        raise PayloadDecodeError("payload is not [args, kwargs]")
    return tuple(value[0]), value[1]
