"""Raising an exception inside another thread, for task timeouts.

Threads cannot be killed. CPython can, however, schedule an exception to be
raised in a thread at its next bytecode (``PyThreadState_SetAsyncExc``). A task
stuck in a long C call (``time.sleep``, a blocking socket read) only sees it when
that call returns; if it never does within the grace period, the runner
abandons the thread and starts a replacement.
"""

from __future__ import annotations

import ctypes

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


class Interrupt(BaseException):
    """Raised inside a worker thread whose attempt ran past its timeout.

    A ``BaseException`` so that a task's ``except Exception:`` does not swallow it;
    the runner records the attempt as failed with ``TaskTimeoutError``.
    """


def raise_in_thread(ident: int) -> bool:
    """Schedule :class:`Interrupt` in thread ``ident``; return whether it exists."""
    found: int = _set_async_exc(ident, ctypes.py_object(Interrupt))
    return found == 1


def clear_in_thread(ident: int) -> None:
    """Cancel a scheduled, not yet delivered exception in thread ``ident``."""
    _set_async_exc(ident, ctypes.py_object())  # NULL clears
