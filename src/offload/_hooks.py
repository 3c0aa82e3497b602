"""Hooks: the extension point for retries, metrics, tracing and integrations.

A hook is an object with some of the :class:`Hook` methods, or a plain function
registered for one event with :func:`on`. ``before_*`` events call hooks in
registration order, ``after_*`` events and ``on_shutdown`` in reverse order (so
a hook that wraps others, like a tracer, sees its ``before`` first and its
``after`` last). A hook that raises is logged and counted; it never stops the
task, the worker or the caller.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._log import runner_log

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._runner import Runner

EVENTS = (
    "before_enqueue",
    "before_attempt",
    "after_attempt",
    "after_success",
    "after_failure",
    "after_retry_scheduled",
    "on_shutdown",
    "on_thread_exit",
)
_REVERSED = frozenset(e for e in EVENTS if not e.startswith("before_"))


class Hook:
    """Base class for hooks; override the events you need.

    Every method receives the task's :class:`~offload.TaskHandle` (``on_shutdown``
    the runner). They run in the thread where the event happens: ``before_enqueue``
    in the caller's, the attempt events in the worker's.
    """

    def before_enqueue(self, handle: TaskHandle) -> None:
        """A task was validated and is about to be queued."""

    def before_attempt(self, handle: TaskHandle) -> None:
        """An attempt starts (``handle.attempts`` is its number, from 1)."""

    def after_attempt(self, handle: TaskHandle, exc: BaseException | None) -> None:
        """An attempt ended; ``exc`` is None on success."""

    def after_success(self, handle: TaskHandle, result: Any) -> None:
        """The task succeeded with ``result``."""

    def after_failure(self, handle: TaskHandle, exc: BaseException) -> None:
        """The task failed for good with ``exc`` (no retry left or not retryable)."""

    def after_retry_scheduled(self, handle: TaskHandle, exc: BaseException, delay: float) -> None:
        """An attempt failed with ``exc`` and the next one starts in ``delay`` seconds."""

    def on_shutdown(self, runner: Runner) -> None:
        """The runner finished shutting down."""

    def on_thread_exit(self, runner: Runner) -> None:
        """A worker thread is about to exit (idle, shutdown or abandoned), in that thread.

        The place to release what a thread holds, like Django's database connections.
        """


def check_event(event: str) -> str:
    """Return ``event`` if it is a known hook event, else raise ``ConfigurationError``."""
    if event not in EVENTS:
        raise ConfigurationError(f"unknown hook event {event!r}; expected one of {', '.join(EVENTS)}")
    return event


# Functions registered with offload.on(): they apply to every runner in the process.
_global: list[tuple[str, Callable[..., Any]]] = []
_global_lock = threading.Lock()
_hook_sets: weakref.WeakSet[HookSet] = weakref.WeakSet()


def on(event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function for ``event`` on every runner of this process.

    Usage::

        @offload.on("after_failure")
        def report(handle, exc):
            sentry_sdk.capture_exception(exc)

    The function takes the same arguments as the :class:`Hook` method of that
    name. Returns the function unchanged; :func:`off` removes it.
    """
    check_event(event)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise ConfigurationError(f"offload.on({event!r}) must decorate a callable, got {fn!r}")
        with _global_lock:
            _global.append((event, fn))
        _rebuild_all()
        return fn

    return register


def off(event: str, fn: Callable[..., Any]) -> bool:
    """Remove a function registered with :func:`on`; return whether it was registered."""
    check_event(event)
    with _global_lock:
        try:
            _global.remove((event, fn))
        except ValueError:
            return False
    _rebuild_all()
    return True


def _rebuild_all() -> None:
    for hook_set in list(_hook_sets):
        hook_set._rebuild()


def _hook_methods(hook: object) -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for event in EVENTS:
        method = getattr(hook, event, None)
        if method is None:
            continue
        if not callable(method):
            raise ConfigurationError(f"hook {hook!r}: attribute {event} is not callable")
        # Skip the no-op inherited from Hook so unused events cost nothing.
        if isinstance(hook, Hook) and getattr(type(hook), event, None) is getattr(Hook, event):
            continue
        found.append((event, method))
    if not found and not isinstance(hook, Hook):
        raise ConfigurationError(f"hook {hook!r} has none of the hook methods {', '.join(EVENTS)}")
    return found


class HookSet:
    """The hooks of one runner merged with the global ones.

    Each event is an attribute holding the callables in calling order (an empty
    tuple when there are none), so the hot path tests ``if hooks.after_success:``
    and pays nothing when no hook is registered.
    """

    before_enqueue: tuple[Callable[..., Any], ...] = ()
    before_attempt: tuple[Callable[..., Any], ...] = ()
    after_attempt: tuple[Callable[..., Any], ...] = ()
    after_success: tuple[Callable[..., Any], ...] = ()
    after_failure: tuple[Callable[..., Any], ...] = ()
    after_retry_scheduled: tuple[Callable[..., Any], ...] = ()
    on_shutdown: tuple[Callable[..., Any], ...] = ()
    on_thread_exit: tuple[Callable[..., Any], ...] = ()

    def __init__(self, hooks: object = ()) -> None:
        if not isinstance(hooks, (list, tuple)):
            raise ConfigurationError(f"Runner: hooks must be a list of hook objects, got {hooks!r}")
        self._own: list[tuple[object, list[tuple[str, Callable[..., Any]]]]] = []
        self._lock = threading.Lock()
        self.errors = 0
        for hook in hooks:
            self._own.append((hook, _hook_methods(hook)))
        _hook_sets.add(self)
        self._rebuild()

    def add(self, hook: object) -> None:
        methods = _hook_methods(hook)
        with self._lock:
            self._own.append((hook, methods))
        self._rebuild()

    def remove(self, hook: object) -> bool:
        with self._lock:
            for i, (own, _) in enumerate(self._own):
                if own is hook:
                    del self._own[i]
                    break
            else:
                return False
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        with self._lock, _global_lock:
            merged: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
            for event, fn in _global:
                merged[event].append(fn)
            for _, methods in self._own:
                for event, fn in methods:
                    merged[event].append(fn)
            for event, fns in merged.items():
                setattr(self, event, tuple(reversed(fns)) if event in _REVERSED else tuple(fns))

    def fire(self, event: str, *args: Any) -> None:
        """Call every hook for ``event``; log and count any that raises."""
        for fn in getattr(self, event):
            try:
                fn(*args)
            except (Exception, SystemExit):  # a hook never ends a worker thread or the caller
                with self._lock:
                    self.errors += 1
                runner_log.exception("hook %r for %s raised; ignored", fn, event)
