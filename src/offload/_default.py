"""The process-wide default runner behind ``offload.submit``, ``Task.delay`` and friends.

Created lazily on first use (the zero-setup promise of ``threading.Thread``) from
the settings given to :func:`configure`; nothing is read at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ._config import RunnerSettings
from ._errors import ConfigurationError, RunnerClosedError
from ._handle import TaskHandle
from ._runner import Runner
from ._shutdown import check_shutdown_arguments
from ._stats import RunnerStats

_lock = threading.Lock()
_settings = RunnerSettings()
_runner: Runner | None = None

#: Set when the interpreter is exiting: no new default runner is created then.
exiting = False


def configure(**options: Any) -> None:
    """Set options of the default runner before it starts.

    Takes the keyword options of :class:`~offload.Runner` (``workers``,
    ``queue_size``, ``on_full``, ``block_timeout``, ``history``,
    ``drain_timeout``, ``idle_timeout``, ``abandon_timeout``, ``max_abandoned``,
    ``eager``, ``journal``); options not given keep their current value. Calling it again
    with the same values is harmless.

    Raises:
        ConfigurationError: an option is unknown or invalid, or the default runner
            already started with different settings.
    """
    global _settings
    with _lock:
        new = _settings.replace(**options)
        if _runner is not None and not _runner.closed:
            differences = _runner.settings.diff(new)
            if differences:
                changed = ", ".join(f"{k}={old!r} (asked {want!r})" for k, (old, want) in differences.items())
                raise ConfigurationError(
                    f"configure(): the default runner already started with {changed}; "
                    "call offload.configure() before the first task is submitted"
                )
            return
        _settings = new


def default_runner() -> Runner:
    """The default runner, created with the configured settings on first call."""
    global _runner
    runner = _runner
    if runner is not None and not runner.closed:
        return runner
    with _lock:
        if _runner is None or _runner.closed:
            if exiting:
                raise RunnerClosedError("the interpreter is exiting; offload accepts no new tasks")
            _runner = Runner.from_settings(_settings)
        return _runner


def install(runner: Runner | None) -> Runner | None:
    """Make ``runner`` the default one (``None``: back to lazy creation); return the previous."""
    global _runner
    if runner is not None and not isinstance(runner, Runner):
        raise ConfigurationError(f"expected an offload.Runner, got {runner!r}")
    with _lock:
        previous, _runner = _runner, runner
    return previous


def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskHandle:
    """Run ``fn(*args, **kwargs)`` in the background on the default runner.

    See :meth:`Runner.submit`.
    """
    return default_runner()._enqueue(fn, args, kwargs)


def get(task_id: str) -> TaskHandle | None:
    """The handle of a recent task of the default runner, or ``None``.

    Unfinished tasks are always found; finished ones while they are among the
    last ``history`` tasks.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"get(): task id must be a str, got {task_id!r}")
    runner = _runner
    return None if runner is None else runner.get(task_id)


def start(*, periodic: bool = True, state_dir: str | os.PathLike[str] | None = None) -> Runner:
    """Start the default runner now and run the periodic tasks on it.

    Call it once at application start-up (integrations do). See :meth:`Runner.start`.
    """
    return default_runner().start(periodic=periodic, state_dir=state_dir)


def stats() -> RunnerStats:
    """Stats of the default runner.

    Before the first task this does not create it (so a later ``configure()`` still
    works): it returns the empty stats of a runner with the configured settings.
    """
    runner = _runner
    if runner is None:
        with _lock:
            settings = _settings
        return Runner.from_settings(settings).stats()
    return runner.stats()


def shutdown(wait: bool = True, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
    """Shut the default runner down if it exists; see :meth:`Runner.shutdown`.

    A later submit creates a new default runner with the same settings.
    """
    check_shutdown_arguments(wait, cancel_pending, timeout)
    runner = _runner
    if runner is not None:
        runner.shutdown(wait, cancel_pending=cancel_pending, timeout=timeout)
