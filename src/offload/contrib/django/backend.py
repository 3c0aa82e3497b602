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
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.core import checks
from django.utils import timezone as django_timezone

from ..._config import RunnerSettings
from ..._errors import ConfigurationError, PayloadError
from ..._handle import TaskHandle
from ..._hooks import Hook
from ..._ids import new_task_id
from ..._runner import Runner
from ..._task import Task as OffloadTaskDeclaration
from ..._task import TaskOptions
from ..._workers import error_info
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
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


def execute(task_result: TaskResult) -> Any:
    """One attempt, in a worker thread: call the function, return a JSON-normalised value."""
    task = task_result.task
    if task.takes_context:
        value = task.call(TaskContext(task_result=task_result), *task_result.args, **task_result.kwargs)
    else:
        value = task.call(*task_result.args, **task_result.kwargs)
    return normalize_json(value)


@functools.lru_cache(maxsize=1024)
def _declaration(name: str, policy: tuple[tuple[str, Any], ...], queue: str) -> OffloadTaskDeclaration[Any, Any]:
    """The offload task that runs ``execute`` with one policy (cached: built per distinct policy)."""
    return OffloadTaskDeclaration(execute, TaskOptions.build(name, queue=queue, **dict(policy)))


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


# -- recording attempts on the TaskResult ---------------------------------------------------


def _set(result: TaskResult, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(result, name, value)  # TaskResult is frozen; backends update it in place


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_native_id()}"


def _task_error(exc: BaseException) -> TaskError:
    info = error_info(exc)
    return TaskError(exception_class_path=info.type, traceback=info.traceback)


class ResultRecorder(Hook):
    """Keeps each TaskResult in step with its handle and sends the framework's signals."""

    def __init__(self, state: AliasState) -> None:
        self.state = state

    def before_attempt(self, handle: TaskHandle) -> None:
        result = self.state.result(handle.id)
        now = django_timezone.now()
        _set(result, status=TaskResultStatus.RUNNING, last_attempted_at=now)
        if result.started_at is None:
            _set(result, started_at=now)
        result.worker_ids.append(_worker_id())
        task_started.send(sender=OffloadBackend, task_result=result)

    def after_retry_scheduled(self, handle: TaskHandle, exc: BaseException, delay: float) -> None:
        result = self.state.result(handle.id)
        result.errors.append(_task_error(exc))
        _set(result, status=TaskResultStatus.READY)

    def after_success(self, handle: TaskHandle, value: Any) -> None:
        result = self.state.result(handle.id)
        _set(result, _return_value=value, status=TaskResultStatus.SUCCESSFUL, finished_at=django_timezone.now())
        task_finished.send(sender=OffloadBackend, task_result=result)

    def after_failure(self, handle: TaskHandle, exc: BaseException) -> None:
        result = self.state.result(handle.id)
        result.errors.append(_task_error(exc))
        _set(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
        task_finished.send(sender=OffloadBackend, task_result=result)

    def on_done(self, handle: TaskHandle) -> None:
        """Done callback: a task cancelled before it ran (rollback, shutdown) is FAILED, not READY forever."""
        if not handle.cancelled():
            return
        result = self.state.find(handle.id)
        if result is None or result.is_finished:
            return
        result.errors.append(
            TaskError(
                exception_class_path="offload.TaskCancelledError",
                traceback=f"offload.TaskCancelledError: task {handle.name} (id {handle.id}) {handle.cancel_reason}\n",
            )
        )
        _set(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
        task_finished.send(sender=OffloadBackend, task_result=result)


# -- one runner and result store per alias, shared by the per-thread backend instances -----


class AliasState:
    def __init__(self, alias: str, settings: BackendSettings) -> None:
        self.alias = alias
        self.settings = settings
        self.recorder = ResultRecorder(self)
        self.runner = Runner.from_settings(settings.runner, hooks=[self.recorder])
        self._results: OrderedDict[str, TaskResult] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, result: TaskResult) -> None:
        with self._lock:
            self._results[result.id] = result
            # finished results beyond the limit go first; unfinished ones are bounded by queue_size
            while len(self._results) > self.settings.results + self.settings.runner.queue_size:
                self._results.popitem(last=False)

    def find(self, result_id: str) -> TaskResult | None:
        with self._lock:
            return self._results.get(result_id)

    def result(self, result_id: str) -> TaskResult:
        found = self.find(result_id)
        if found is None:  # pragma: no cover - kept from enqueue until well after it finishes
            raise TaskResultDoesNotExist(result_id)
        return found


_states: dict[str, AliasState] = {}
_states_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _states_lock
    _states_lock = threading.Lock()  # the runners reset themselves; the lock may have been held


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def state_for(alias: str, settings: BackendSettings) -> AliasState:
    """The alias's runner and results; replaced (old runner drained) if its OPTIONS changed."""
    with _states_lock:
        state = _states.get(alias)
        if state is not None and state.settings == settings and not state.runner.closed:
            return state
        _states[alias] = new = AliasState(alias, settings)
    if state is not None:
        state.runner.shutdown(wait=True)
    return new


def shutdown_all(timeout: float | None = None) -> None:
    """Drain every alias's runner (tests, and management commands that exit)."""
    with _states_lock:
        states = list(_states.values())
        _states.clear()
    for state in states:
        state.runner.shutdown(wait=True, timeout=timeout)


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

    def _state(self) -> AliasState:
        if self.settings is None:
            raise ConfigurationError(self.options_error)
        return state_for(self.alias, self.settings)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if self.settings is not None and isinstance(task, OffloadTask):
            declaration_for(task, self.settings.policy)  # an invalid policy fails at declaration

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
        state.keep(result)
        # Sent before the runner has it, so no receiver sees task_started first; if the
        # runner then refuses it (full, closed), the result fails and task_finished follows.
        task_enqueued.send(sender=type(self), task_result=result)
        try:
            handle = state.runner._enqueue(
                declaration, (result,), {}, eta=eta, priority=task.priority, task_id=result.id
            )
        except Exception as exc:
            result.errors.append(_task_error(exc))
            _set(result, status=TaskResultStatus.FAILED, finished_at=django_timezone.now())
            task_finished.send(sender=type(self), task_result=result)
            raise
        handle.add_done_callback(state.recorder.on_done)
        return result

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        # Enqueueing never waits on I/O (unless on_full="block"): no thread hop needed.
        if self.settings is not None and self.settings.runner.on_full == "raise":
            return self.enqueue(task, args, kwargs)
        return await super().aenqueue(task, args, kwargs)

    def get_result(self, result_id: str) -> TaskResult:
        state = _states.get(self.alias)
        found = None if state is None else state.find(result_id)
        if found is None:
            raise TaskResultDoesNotExist(result_id)
        return found

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        if self.options_error is not None:
            return [checks.Error(self.options_error, id="offload.E101", obj=f"TASKS[{self.alias!r}]")]
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
