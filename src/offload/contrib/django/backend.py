"""``OffloadBackend``: Django's Tasks framework running on an offload runner.

    TASKS = {
        "default": {
            "BACKEND": "offload.contrib.django.OffloadBackend",
            "OPTIONS": {"WORKERS": 8, "RETRIES": 3, "BACKOFF": 2, "TIMEOUT": 60},
        }
    }

Each alias has one runner per process (Django creates backend instances per
thread; they share it through a process-wide registry). Every attempt updates
the ``TaskResult``: ``RUNNING`` with a worker id appended, back to ``READY``
with the error appended when a retry is scheduled, then ``SUCCESSFUL`` or
``FAILED``; the framework's ``task_enqueued``, ``task_started`` (per attempt)
and ``task_finished`` signals are sent. Without a journal, ``get_result()``
finds results of this process only (``supports_get_result`` is False).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.core import checks
from django.utils import timezone as django_timezone
from django.utils.module_loading import import_string

from ... import _task
from ..._config import RunnerSettings
from ..._errors import ConfigurationError, PayloadError
from ..._ids import new_task_id
from ..._runner import Runner
from ..._task import Task as OffloadTaskDeclaration
from ..._task import TaskOptions
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
)
from .results import (
    RESULTS,
    ResultRecorder,
    close_journals,
    declared,
    install_hooks,
    result_from_journal,
    task_error,
    update,
)

# -- the task class: offload's policies as fields --------------------------------------

POLICY_FIELDS = ("retries", "retry_on", "backoff", "max_backoff", "jitter", "timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadTask(Task):
    """A Task with offload's retry and timeout policy; ``None`` takes the backend's OPTIONS.

    ``@task(retries=3, backoff=2, timeout=30)`` under an offload backend creates one.
    """

    retries: int | None = None
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None
    backoff: float | None = None
    max_backoff: float | None = None
    jitter: bool | None = None
    timeout: float | None = None


# -- OPTIONS ----------------------------------------------------------------------------

_RUNNER_OPTIONS = {name.upper(): name for name in RunnerSettings.names()}
_POLICY_OPTIONS = {name.upper(): name for name in POLICY_FIELDS if name != "retry_on"}


@dataclass(frozen=True)
class BackendSettings:
    runner: RunnerSettings
    policy: dict[str, Any]  # task defaults: retries, backoff, max_backoff, jitter, timeout
    results: int  # TaskResults kept for get_result()


def parse_options(alias: str, options: object) -> BackendSettings:
    """Validate ``TASKS[alias]["OPTIONS"]``; errors name the alias and the key."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where} must be a dict, got {options!r}")
    known = {*_RUNNER_OPTIONS, *_POLICY_OPTIONS, "RESULTS"}
    unknown = sorted(str(key) for key in options if key not in known)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    try:
        runner = RunnerSettings().replace(**{_RUNNER_OPTIONS[k]: v for k, v in options.items() if k in _RUNNER_OPTIONS})
        policy = {_POLICY_OPTIONS[k]: v for k, v in options.items() if k in _POLICY_OPTIONS}
        TaskOptions.build(f"{where} defaults", **policy)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    results = options.get("RESULTS", runner.history)
    if isinstance(results, bool) or not isinstance(results, int) or results < 0:
        raise ConfigurationError(f"{where}['RESULTS'] must be an integer >= 0, got {results!r}")
    return BackendSettings(runner=runner, policy=policy, results=results)


# -- running one task -----------------------------------------------------------------


class RunFrameworkTask:
    """The function offload runs for a framework task: found again by its import path.

    It is registered under the task's ``module_path``, so a process that only reads
    the journal (``manage.py offload_worker``) finds it by name, never by unpickling,
    once it has imported the module that declares the task.
    """

    def __init__(self, module_path: str) -> None:
        self.module_path = module_path
        self.__name__ = self.__qualname__ = module_path.rsplit(".", 1)[-1]
        self.__module__ = module_path.rsplit(".", 1)[0]

    def __call__(self, context: Any, *args: Any, **kwargs: Any) -> Any:
        handle = context._handle
        task = import_string(self.module_path)
        if task.takes_context:
            result = RESULTS.for_handle(handle)
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        return normalize_json(value)


@functools.cache
def _runner_for(module_path: str) -> RunFrameworkTask:
    """One function object per framework task, whatever the policy: the journal checks identity."""
    return RunFrameworkTask(module_path)


@functools.lru_cache(maxsize=1024)
def _declaration(name: str, policy: tuple[tuple[str, Any], ...], queue: str) -> OffloadTaskDeclaration[Any, Any]:
    """The registered offload task for one framework task and policy (built once)."""
    options = TaskOptions.build(name, queue=queue, bind=True, **dict(policy))
    declaration = OffloadTaskDeclaration(_runner_for(name), options)
    _task._register(declaration)  # the journal finds it by name in any process
    declared(name)
    return declaration


def declaration_for(task: Task, defaults: dict[str, Any]) -> OffloadTaskDeclaration[Any, Any]:
    """The offload task for a framework task: its own policy fields over the backend's defaults."""
    policy = dict(defaults)
    for field in POLICY_FIELDS:
        value = getattr(task, field, None)
        if value is not None:
            policy[field] = tuple(value) if isinstance(value, list) else value
    try:
        return _declaration(task.module_path, tuple(sorted(policy.items())), task.queue_name)
    except ConfigurationError as exc:
        raise InvalidTask(str(exc)) from None
    except TypeError as exc:  # lru_cache: an unhashable option value
        raise InvalidTask(f"task {task.module_path!r}: option values must be hashable ({exc})") from None


# -- one runner per alias, shared by the per-thread backend instances -----------------------


class AliasState:
    def __init__(self, alias: str, settings: BackendSettings) -> None:
        self.alias = alias
        self.settings = settings
        self.runner = Runner.from_settings(settings.runner)


_states: dict[str, AliasState] = {}
_states_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _states_lock
    _states_lock = threading.Lock()  # the runners reset themselves; the lock may have been held


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def state_for(alias: str, settings: BackendSettings) -> AliasState:
    """The alias's runner; replaced (old runner drained) if its OPTIONS changed."""
    with _states_lock:
        state = _states.get(alias)
        if state is not None and state.settings == settings and not state.runner.closed:
            return state
        _states[alias] = new = AliasState(alias, settings)
    if state is not None:
        state.runner.shutdown(wait=True)
    return new


def shutdown_all(timeout: float | None = None) -> None:
    """Drain every alias's runner and close the journals opened for reading (tests, commands)."""
    with _states_lock:
        states = list(_states.values())
        _states.clear()
    for state in states:
        state.runner.shutdown(wait=True, timeout=timeout)
    close_journals()


# -- the backend ---------------------------------------------------------------------


class OffloadBackend(BaseTaskBackend):
    task_class = OffloadTask
    supports_defer = True
    supports_async_task = True
    supports_priority = True
    supports_get_result = False  # results of this process only, until a journal is configured

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        try:
            self.settings: BackendSettings | None = parse_options(alias, self.options)
            self.options_error: str | None = None
        except ConfigurationError as exc:
            self.settings, self.options_error = None, str(exc)
        journal = None if self.settings is None else self.settings.runner.journal
        self.journal_path = journal if isinstance(journal, str) else None
        # With a journal, any process finds any result; without, this process's only.
        self.supports_get_result = self.journal_path is not None
        install_hooks()

    def _state(self) -> AliasState:
        if self.settings is None:
            raise ConfigurationError(self.options_error)
        return state_for(self.alias, self.settings)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if self.settings is not None:
            declaration_for(task, self.settings.policy)  # registers it; an invalid policy fails here

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        state = self._state()
        json_args, json_kwargs = _json_arguments(task, args, kwargs)
        result = TaskResult(
            task=task,
            id=new_task_id(),
            status=TaskResultStatus.READY,
            enqueued_at=django_timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=json_args,
            kwargs=json_kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        declaration = declaration_for(task, state.settings.policy)
        eta = _aware(task.run_after)
        RESULTS.keep(result)
        # Sent before the runner has it, so no receiver sees task_started first; if the
        # runner then refuses it (full, closed), the result fails and task_finished follows.
        task_enqueued.send(sender=type(self), task_result=result)
        try:
            handle = state.runner._enqueue(
                declaration, tuple(json_args), dict(json_kwargs), eta=eta, priority=task.priority, task_id=result.id
            )
        except Exception as exc:
            result.errors.append(task_error(exc))
            update(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
            task_finished.send(sender=type(self), task_result=result)
            raise
        handle.add_done_callback(ResultRecorder.on_done)
        return result

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        # Enqueueing never waits on I/O (unless on_full="block"): no thread hop needed.
        if self.settings is not None and self.settings.runner.on_full == "raise" and self.journal_path is None:
            return self.enqueue(task, args, kwargs)
        return await super().aenqueue(task, args, kwargs)

    def get_result(self, result_id: str) -> TaskResult:
        found = RESULTS.find(result_id)
        if found is None and self.journal_path is not None:
            found = result_from_journal(self.journal_path, result_id)
        if found is None:
            raise TaskResultDoesNotExist(result_id)
        return found

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        if self.options_error is not None:
            return [checks.Error(self.options_error, id="offload.E101", obj=f"TASKS[{self.alias!r}]")]
        if self.journal_path is not None:
            from .checks import journal_problem

            problem = journal_problem(self.journal_path)
            if problem is not None:
                return [checks.Error(problem, id="offload.E102", obj=f"TASKS[{self.alias!r}]['OPTIONS']['JOURNAL']")]
        return []


def _aware(when: datetime | None) -> datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.astimezone(timezone.utc)  # naive under USE_TZ=False: local time


def _json_arguments(task: Task, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """Arguments as the framework stores them (JSON); the one that is not, named, with the fix."""
    try:
        return normalize_json(list(args)), normalize_json(dict(kwargs))
    except (TypeError, ValueError):
        pass
    places = [(f"args[{i}]", v) for i, v in enumerate(args)] + [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for where, value in places:
        try:
            normalize_json(value)
        except (TypeError, ValueError) as exc:
            hint = "pass values that JSON can carry"
            if hasattr(value, "pk") and hasattr(value, "_meta"):
                hint = f"pass its primary key ({where} = obj.pk) and load the row in the task"
            elif hasattr(value, "model") and hasattr(value, "query"):
                hint = "pass the primary keys or the filter values and build the queryset in the task"
            raise PayloadError(
                f"task {task.module_path!r}: argument {where} ({type(value).__name__}) is not JSON-serializable, "
                f"which Django's Tasks framework requires ({exc}); {hint}"
            ) from None
    raise PayloadError(f"task {task.module_path!r}: the arguments are not JSON-serializable")  # pragma: no cover


__all__ = ["OffloadBackend", "OffloadTask", "shutdown_all"]
