"""``offload.Thread``: the ``threading.Thread`` API, run on the pool."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._default import default_runner
from ._handle import TaskHandle, _check_timeout


class Thread:
    """Drop-in for ``threading.Thread(target=..., args=...).start()``.

    The target runs on the default runner's bounded pool instead of a new
    thread, and a failure is logged and recorded instead of vanishing. As with
    ``threading.Thread``, a subclass may override :meth:`run` instead of passing
    ``target``.

    Args:
        group: must be None (as in ``threading``).
        target: the callable to run.
        name: the task name recorded for it (default: the target's qualified name).
        args: positional arguments.
        kwargs: keyword arguments.
        daemon: accepted for compatibility and ignored: pool threads never block
            interpreter exit; offload drains them instead.
    """

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if group is not None:
            raise ValueError(f"offload.Thread: group must be None (as in threading.Thread), got {group!r}")
        if target is not None and not callable(target):
            raise TypeError(f"offload.Thread: target must be callable, got {target!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"offload.Thread: name must be a str, got {name!r}")
        if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
            raise TypeError(f"offload.Thread: args must be a tuple or list, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"offload.Thread: kwargs must be a dict, got {kwargs!r}")
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._name = name
        self.daemon = daemon
        self.handle: TaskHandle | None = None

    @property
    def name(self) -> str:
        """The recorded task name (the handle's once started)."""
        if self.handle is not None:
            return self.handle.name
        return self._name or "offload.Thread"

    def run(self) -> None:
        """What the task does; by default calls ``target(*args, **kwargs)``."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def start(self) -> TaskHandle:
        """Submit to the default runner; return the handle (also kept as ``.handle``).

        Raises:
            RuntimeError: started twice (as ``threading.Thread``).
            EnqueueError: the task could not be accepted (see ``Runner.submit``).
        """
        if self.handle is not None:
            raise RuntimeError("threads can only be started once")
        runner = default_runner()
        if type(self).run is Thread.run and self._target is not None:
            handle = runner._enqueue(self._target, self._args, self._kwargs, name=self._name)
        else:
            name = self._name or f"{type(self).__module__}.{type(self).__qualname__}"
            handle = runner._enqueue(self.run, (), {}, name=name)
        self.handle = handle
        return handle

    def join(self, timeout: float | None = None) -> None:
        """Wait until the task is done or ``timeout`` seconds pass (like ``threading``)."""
        _check_timeout(timeout, "join")
        if self.handle is None:
            raise RuntimeError("cannot join thread before it is started")
        self.handle.wait(timeout)

    def is_alive(self) -> bool:
        """True from ``start()`` until the task is done."""
        return self.handle is not None and not self.handle.done()

    def __repr__(self) -> str:
        state = "initial" if self.handle is None else self.handle.state.value
        return f"<offload.Thread {self.name} {state}>"
