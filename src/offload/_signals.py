"""Opt-in signal handling for plain scripts.

offload installs no signal handler by default: in a web app the server
(gunicorn, uvicorn, Django's runserver) owns SIGTERM and SIGINT, and a library
that replaces them breaks its graceful stop. gunicorn's graceful stop and
Ctrl-C under uvicorn end in interpreter exit, where offload drains anyway;
uvicorn's SIGTERM does not (after its own shutdown it restores the default
handler and re-raises the signal, which kills the process), so under uvicorn
drain in the ASGI lifespan shutdown or call :func:`install_signal_handlers`
(docs/shutdown.md). A standalone script that wants Ctrl-C or ``kill`` to drain
first calls it too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

from ._errors import ConfigurationError
from ._log import runner_log


def install_signal_handlers(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """On each of ``signals``: drain the default runner, then run the previous handler.

    The previous handler is chained, never lost: a Python handler is called, the
    default action is restored and the signal raised again (so the exit status
    says what killed the process), an ignored signal stays ignored.

    Raises:
        ConfigurationError: not called from the main thread, or a bad signal.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("install_signal_handlers() must be called from the main thread")
    signals = tuple(signals)
    for signum in signals:
        if not isinstance(signum, int) or signum not in signal.valid_signals():
            raise ConfigurationError(f"install_signal_handlers(): {signum!r} is not a valid signal number")
        if signum in _UNCATCHABLE:
            raise ConfigurationError(f"install_signal_handlers(): {signal.Signals(signum).name} cannot be caught")
    installed: list[tuple[int, Any]] = []
    try:
        for signum in signals:
            previous = signal.getsignal(signum)
            signal.signal(signum, _make_handler(signum, previous))
            installed.append((signum, previous))
    except (OSError, ValueError) as exc:
        for signum, previous in reversed(installed):  # all or nothing
            signal.signal(signum, previous)
        raise ConfigurationError(f"install_signal_handlers(): cannot handle signal {signum!r}: {exc}") from exc


_UNCATCHABLE = frozenset(getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name))


def _make_handler(signum: int, previous: Any) -> Any:
    def handler(received: int, frame: FrameType | None) -> None:
        from ._default import shutdown

        runner_log.warning("received %s: draining offload before exit", signal.Signals(received).name)
        shutdown(wait=True)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(received, signal.SIG_DFL)
            signal.raise_signal(received)
        # SIG_IGN (or None: set from C): nothing more to do

    return handler
