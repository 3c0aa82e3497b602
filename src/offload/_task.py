"""Declared tasks: ``@offload.task`` and the options a task carries."""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from . import _validate as check
from ._errors import ConfigurationError
from ._flow import check_unique_key, takes_context
from ._limits import Rate, parse_rate

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._runner import Runner

P = ParamSpec("P")
R = TypeVar("R")

#: Priorities span the same range as Django's Tasks framework: higher runs first.
PRIORITY_MIN, PRIORITY_MAX = -100, 100

# Exponent cap for the backoff doubling, far beyond any sane max_backoff; keeps
# 2 ** n from overflowing a float when a task has thousands of retries.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The policies a task runs with. Built and validated by :func:`task`.

    Attributes:
        name: the registered name (``module.qualname`` unless given).
        retries: how many more attempts after the first may run.
        retry_on: exception classes that cause a retry; others fail at once.
        backoff: seconds before the first retry; doubles on each next one.
        max_backoff: cap of the backoff in seconds.
        jitter: draw each delay uniformly from ``[0, backoff]`` ("full jitter").
        timeout: seconds an attempt may run before ``TaskTimeoutError``; None: no limit.
        priority: higher runs first within the runner, ``-100`` to ``100``.
        queue: routing label: recorded on the handle, filterable in the dashboard; one
            pool serves every queue of a runner.
        retry_deadline: seconds after the first attempt started past which no
            retry starts; None: only ``retries`` limits them.
        dont_retry_on: exception classes that fail at once, even if in ``retry_on``.
        bind: the function takes a :class:`~offload.TaskContext` first.
        rate_limit: most starts per period (token bucket per task name), or None.
        concurrency: most attempts of this task running at once, or None.
        unique_key: function of the arguments giving the key under which at most
            one task is queued or running; None: not unique.
        at_most_once: journal mode only: an attempt interrupted by the death of
            its process is not run again (the task ends ``interrupted``).
    """

    name: str
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 1.0
    max_backoff: float = 600.0
    jitter: bool = True
    timeout: float | None = None
    priority: int = 0
    queue: str = "default"
    retry_deadline: float | None = None
    dont_retry_on: tuple[type[BaseException], ...] = ()
    bind: bool = False
    rate_limit: Rate | None = None
    concurrency: int | None = None
    unique_key: Callable[..., Any] | None = None

    # True if tasks with these options need per-task flow-control state; computed
    # once here because the runner tests it on every enqueue.
    flow: bool = field(init=False, default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        needs_flow = self.bind or self.unique_key is not None or self.rate_limit is not None
        object.__setattr__(self, "flow", needs_flow or self.concurrency is not None)

    at_most_once: bool = False

    @classmethod
    def build(
        cls,
        name: str,
        *,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        backoff: float = 1.0,
        max_backoff: float = 600.0,
        jitter: bool = True,
        timeout: float | None = None,
        priority: int = 0,
        queue: str = "default",
        retry_deadline: float | None = None,
        dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        bind: bool = False,
        rate_limit: str | None = None,
        concurrency: int | None = None,
        unique: bool = False,
        unique_key: Callable[..., Any] | None = None,
        at_most_once: bool = False,
    ) -> TaskOptions:
        """Validate every option and return the options; raise ``ConfigurationError``."""
        owner = f"task {name!r}"
        backoff_s = check.seconds(owner, "backoff", backoff)
        max_backoff_s = check.seconds(owner, "max_backoff", max_backoff)
        if max_backoff_s < backoff_s:
            raise ConfigurationError(f"{owner}: max_backoff ({max_backoff!r}) must be >= backoff ({backoff!r})")
        return cls(
            name=check.name(owner, "name", name),
            retries=check.integer(owner, "retries", retries, minimum=0),
            retry_on=check.exception_types(owner, "retry_on", retry_on),
            backoff=backoff_s,
            max_backoff=max_backoff_s,
            jitter=check.flag(owner, "jitter", jitter),
            timeout=check.optional_seconds(owner, "timeout", timeout, zero_ok=False),
            priority=check.integer(owner, "priority", priority, minimum=PRIORITY_MIN, maximum=PRIORITY_MAX),
            queue=check.name(owner, "queue", queue),
            retry_deadline=check.optional_seconds(owner, "retry_deadline", retry_deadline, zero_ok=False),
            dont_retry_on=check.exception_types(owner, "dont_retry_on", dont_retry_on),
            bind=check.flag(owner, "bind", bind),
            rate_limit=parse_rate(owner, rate_limit),
            concurrency=None if concurrency is None else check.integer(owner, "concurrency", concurrency, minimum=1),
            unique_key=check_unique_key(owner, unique, unique_key),
            at_most_once=check.flag(owner, "at_most_once", at_most_once),
        )

    def retry_delay(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(retry_number - 1, _MAX_EXPONENT))
        return random.uniform(0.0, ceiling) if self.jitter else ceiling


def callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a callable, with sensible fallbacks."""
    try:
        module: str | None = fn.__module__  # the common case, on the submit path
        qualname = fn.__qualname__
    except AttributeError:
        pass
    else:
        if module is None:  # a builtin method such as [].append has no __module__
            owner = getattr(fn, "__self__", None)
            module = "builtins" if owner is None else type(owner).__module__
        return f"{module}.{qualname}"
    if isinstance(fn, functools.partial):
        return callable_name(fn.func)
    cls = type(fn)
    return f"{cls.__module__}.{cls.__qualname__}"


class Task(Generic[P, R]):
    """A function declared with :func:`task`.

    Calling it runs the function inline, exactly as before it was decorated.
    ``delay``/``enqueue``/``apply_async`` run it in the background on the default
    runner (or pass the task to ``Runner.submit`` to use another one); the task's
    options travel with it either way.
    """

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options

    @property
    def name(self) -> str:
        """The name the task is registered and recorded under."""
        return self.options.name

    def __repr__(self) -> str:
        return f"<offload.Task {self.options.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.options.bind:
            # Called inline: the function still gets a context (id None, attempt 1).
            from ._context import TaskContext

            return self.fn(TaskContext(None, self.name, self.options.retries), *args, **kwargs)  # type: ignore[arg-type]
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Run in the background with these arguments (Celery spelling)."""
        return _default_runner()._enqueue(self, args, kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Run in the background with these arguments (``django.tasks`` spelling)."""
        return _default_runner()._enqueue(self, args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        expires: float | datetime | None = None,
    ) -> TaskHandle:
        """Run in the background, optionally later or with another priority.

        Args:
            args: positional arguments for the function.
            kwargs: keyword arguments for the function.
            countdown: seconds from now before the task may start.
            eta: aware datetime before which the task may not start; one in the
                past means "now". Give ``countdown`` or ``eta``, not both.
            priority: overrides the task's priority for this call.
            expires: seconds from now, or an aware datetime, after which the
                task is marked ``EXPIRED`` instead of started if it has not
                started yet. Must be after ``countdown``/``eta``.
        """
        if not isinstance(args, (tuple, list)):
            raise ConfigurationError(f"task {self.name!r}: apply_async(args=...) must be a tuple or list, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigurationError(f"task {self.name!r}: apply_async(kwargs=...) must be a dict, got {kwargs!r}")
        return _default_runner()._enqueue(
            self, tuple(args), kwargs or {}, countdown=countdown, eta=eta, priority=priority, expires=expires
        )


def _default_runner() -> Runner:
    from ._default import default_runner

    return default_runner()


_registry: dict[str, Task[Any, Any]] = {}
_registry_lock = threading.Lock()


def registered_tasks() -> dict[str, Task[Any, Any]]:
    """A copy of the name -> task registry of this process."""
    with _registry_lock:
        return dict(_registry)


def _register(new: Task[Any, Any]) -> None:
    with _registry_lock:
        old = _registry.get(new.name)
        if old is not None and callable_name(old.fn) != callable_name(new.fn):
            raise ConfigurationError(
                f"task {new.name!r}: name already used by {callable_name(old.fn)}; give one of them another name="
            )
        _registry[new.name] = new  # same function re-imported (autoreload): the newest wins


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    backoff: float = 1.0,
    max_backoff: float = 600.0,
    jitter: bool = True,
    timeout: float | None = None,
    priority: int = 0,
    queue: str = "default",
    retry_deadline: float | None = None,
    dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    bind: bool = False,
    rate_limit: str | None = None,
    concurrency: int | None = None,
    unique: bool = False,
    unique_key: Callable[..., Any] | None = None,
    at_most_once: bool = False,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    backoff: float = 1.0,
    max_backoff: float = 600.0,
    jitter: bool = True,
    timeout: float | None = None,
    priority: int = 0,
    queue: str = "default",
    retry_deadline: float | None = None,
    dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    bind: bool = False,
    rate_limit: str | None = None,
    concurrency: int | None = None,
    unique: bool = False,
    unique_key: Callable[..., Any] | None = None,
    at_most_once: bool = False,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a background task, bare (``@task``) or with options (``@task(retries=3)``).

    Args:
        name: registered name; defaults to ``module.qualname``.
        retries: extra attempts after a failure (0: run once).
        retry_on: exception classes that are retried; anything else fails at once.
        backoff: seconds before the first retry, doubling each time (exponential).
        max_backoff: cap of that delay.
        jitter: draw the delay uniformly between 0 and the cap ("full jitter"),
            so that many failing tasks do not retry in lock-step.
        timeout: seconds an attempt may run; ``None`` for no limit.
        priority: ``-100`` to ``100``; higher runs first.
        queue: routing label.
        retry_deadline: seconds after the first attempt started past which no
            retry starts (caps the time spent retrying as ``retries`` caps the count).
        dont_retry_on: permanent errors: these fail at once even if ``retry_on``
            matches them.
        bind: pass a :class:`~offload.TaskContext` as the first argument (Celery
            spelling). A first parameter named ``context`` does the same
            (``django.tasks`` spelling).
        rate_limit: ``"10/s"``, ``"100/m"``, ``"1000/h"``: most starts per period,
            a token bucket per task name per runner. Tasks over it wait queued,
            without holding a worker.
        concurrency: most attempts of this task running at once in a runner;
            others wait queued, without holding a worker.
        unique: while a task with the same arguments is queued or running,
            enqueueing it again returns the existing handle.
        unique_key: like ``unique``, but the key is ``unique_key(*args, **kwargs)``.
        at_most_once: journal mode: if the process dies while an attempt runs,
            mark the task ``interrupted`` instead of running it again.

    Raises:
        ConfigurationError: an option is invalid (named in the message).
    """

    def decorate(func: Callable[P, R]) -> Task[P, R]:
        if isinstance(func, Task):
            raise ConfigurationError(f"task {func.name!r}: @task applied twice")
        if not callable(func):
            raise ConfigurationError(f"@task must decorate a function, got {func!r}")
        task_name = name if name is not None else callable_name(func)
        options = TaskOptions.build(
            task_name,
            retries=retries,
            retry_on=retry_on,
            backoff=backoff,
            max_backoff=max_backoff,
            jitter=jitter,
            timeout=timeout,
            priority=priority,
            queue=queue,
            retry_deadline=retry_deadline,
            dont_retry_on=dont_retry_on,
            bind=bind or takes_context(func),
            rate_limit=rate_limit,
            concurrency=concurrency,
            unique=unique,
            unique_key=unique_key,
            at_most_once=at_most_once,
        )
        declared = Task(func, options)
        _register(declared)
        return declared

    if fn is not None:
        return decorate(fn)
    return decorate
