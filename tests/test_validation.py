"""Bad arguments to every public entry point.

Each test asserts the exception type and that the message names what was
wrong: the task (or the object the option belongs to), the option and the bad
value, so that the error can be fixed from the message alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import offload
from offload.testing import use_runner

from .conftest import WAIT

# -- helpers ------------------------------------------------------------------


def assert_message(exc_info: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message {message!r}"


def qualified(fn: Callable[..., Any]) -> str:
    """The name offload records for a plain callable: ``module.qualname``."""
    return f"{fn.__module__}.{fn.__qualname__}"


def plain_job(user: object = None) -> str:
    return "ran"


@pytest.fixture
def real_runner() -> Iterator[offload.Runner]:
    """A runner on the real clock (the plugin's ``runner`` uses a fake one)."""
    with offload.Runner(workers=2, drain_timeout=WAIT, name="offload-validation") as instance:
        yield instance


# -- @offload.task options ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "option", "value"),
    [
        ({"retries": -1}, "retries", "-1"),
        ({"retries": "3"}, "retries", "'3'"),
        ({"retries": True}, "retries", "True"),
        ({"backoff": -1}, "backoff", "-1"),
        ({"backoff": float("nan")}, "backoff", "nan"),
        ({"backoff": float("inf")}, "backoff", "inf"),
        ({"max_backoff": "60"}, "max_backoff", "'60'"),
        ({"backoff": 10, "max_backoff": 5}, "max_backoff", "5"),
        ({"timeout": 0}, "timeout", "0"),
        ({"timeout": -5}, "timeout", "-5"),
        ({"timeout": "5"}, "timeout", "'5'"),
        ({"timeout": float("nan")}, "timeout", "nan"),
        ({"priority": 101}, "priority", "101"),
        ({"priority": -101}, "priority", "-101"),
        ({"priority": 1.5}, "priority", "1.5"),
        ({"queue": ""}, "queue", "''"),
        ({"queue": " emails"}, "queue", "' emails'"),
        ({"queue": 5}, "queue", "5"),
        ({"retry_on": (42,)}, "retry_on", "(42,)"),
        ({"retry_on": "ValueError"}, "retry_on", "'ValueError'"),
        ({"retry_on": (ValueError, int)}, "retry_on", "<class 'int'>"),
        ({"jitter": "yes"}, "jitter", "'yes'"),
        ({"jitter": 1}, "jitter", "1"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_task_option_rejected_naming_task_option_and_value(options: dict[str, Any], option: str, value: str) -> None:
    def send_report() -> None: ...

    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(**options)(send_report)
    assert_message(info, qualified(send_report), option, value)
    assert qualified(send_report) not in offload.registered_tasks(), "an invalid task must not be registered"


def test_task_option_error_names_the_explicit_task_name() -> None:
    def fn() -> None: ...

    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(name="tests.validation.explicit", retries=-2)(fn)
    assert_message(info, "'tests.validation.explicit'", "retries", "-2")


@pytest.mark.parametrize("bad_name", ["", "  ", " padded", "tab\tname", "x" * 201, 42])
def test_task_name_rejected(bad_name: object) -> None:
    def fn() -> None: ...

    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(name=bad_name)(fn)  # type: ignore[call-overload]
    shown = f"got {len(bad_name)}" if isinstance(bad_name, str) and len(bad_name) > 200 else repr(bad_name)
    assert_message(info, "name", shown)


@pytest.mark.parametrize("not_callable", [42, "tests.validation.send_mail", None])
def test_task_decorator_on_non_callable(not_callable: object) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task()(not_callable)  # type: ignore[arg-type]
    assert_message(info, "@task", repr(not_callable))


def test_task_decorator_with_a_positional_non_callable() -> None:
    # ``@offload.task("name")`` instead of ``@offload.task(name="name")``.
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task("tests.validation.positional")  # type: ignore[call-overload]
    assert_message(info, "@task", "'tests.validation.positional'")


def test_task_applied_twice() -> None:
    def twice() -> None: ...

    declared = offload.task(name="tests.validation.twice")(twice)
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(declared)  # type: ignore[arg-type]
    assert_message(info, "'tests.validation.twice'", "applied twice")
    with pytest.raises(offload.ConfigurationError):
        offload.task(retries=2)(declared)  # type: ignore[arg-type]


def test_task_on_coroutine_function_is_accepted() -> None:
    async def fetch() -> None: ...

    declared = offload.task(fetch)
    assert declared.name == qualified(fetch)
    assert qualified(fetch) in offload.registered_tasks()


def test_duplicate_task_name_with_a_different_function() -> None:
    def first() -> None: ...

    def second() -> None: ...

    kept = offload.task(name="tests.validation.duplicate")(first)
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(name="tests.validation.duplicate")(second)
    assert_message(info, "'tests.validation.duplicate'", qualified(first), "name=")
    assert offload.registered_tasks()["tests.validation.duplicate"] is kept


def test_same_function_declared_again_is_not_a_duplicate() -> None:
    # What an autoreloader does: the same module.qualname is declared again.
    def reloaded() -> None: ...

    offload.task(name="tests.validation.reloaded")(reloaded)
    newest = offload.task(name="tests.validation.reloaded")(reloaded)
    assert offload.registered_tasks()["tests.validation.reloaded"] is newest


# -- apply_async ----------------------------------------------------------------


@offload.task(name="tests.validation.apply")
def apply_target(*args: object, **kwargs: object) -> int:
    return len(args) + len(kwargs)


@pytest.mark.parametrize(
    ("call", "option", "value"),
    [
        ({"args": 5}, "args", "5"),
        ({"args": "ab"}, "args", "'ab'"),
        ({"args": {1, 2}}, "args", "{1, 2}"),
        ({"kwargs": [("a", 1)]}, "kwargs", "[('a', 1)]"),
        ({"kwargs": "a=1"}, "kwargs", "'a=1'"),
        ({"countdown": -1}, "countdown", "-1"),
        ({"countdown": float("nan")}, "countdown", "nan"),
        ({"countdown": float("inf")}, "countdown", "inf"),
        ({"countdown": "5"}, "countdown", "'5'"),
        ({"countdown": True}, "countdown", "True"),
        ({"eta": datetime(2030, 1, 1, 12, 0)}, "eta", "naive"),
        ({"eta": 1_900_000_000}, "eta", "1900000000"),
        ({"eta": "2030-01-01T00:00:00Z"}, "eta", "'2030-01-01T00:00:00Z'"),
        ({"priority": 101}, "priority", "101"),
        ({"priority": "high"}, "priority", "'high'"),
    ],
    ids=repr,
)
def test_apply_async_rejects(runner: offload.Runner, call: dict[str, Any], option: str, value: str) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        apply_target.apply_async(**call)
    assert_message(info, "'tests.validation.apply'", option, value)
    assert runner.stats().submitted == 0


def test_apply_async_naive_eta_message_shows_the_value(runner: offload.Runner) -> None:
    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(offload.ConfigurationError) as info:
        apply_target.apply_async(eta=naive)
    assert_message(info, "'tests.validation.apply'", "eta", "timezone-aware", repr(naive))


def test_apply_async_countdown_and_eta_both(runner: offload.Runner) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        apply_target.apply_async(countdown=5, eta=datetime.now(timezone.utc) + timedelta(seconds=5))
    assert_message(info, "'tests.validation.apply'", "countdown", "eta", "not both")
    assert runner.stats().submitted == 0


def test_apply_async_accepts_a_list_of_args(runner: offload.Runner) -> None:
    handle = apply_target.apply_async([1, 2], {"c": 3})
    assert handle.result(timeout=WAIT) == 3


# -- Runner(...) and RunnerSettings ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "option", "value"),
    [
        ({"workers": 0}, "workers", "0"),
        ({"workers": -1}, "workers", "-1"),
        ({"workers": "4"}, "workers", "'4'"),
        ({"workers": 4.0}, "workers", "4.0"),
        ({"workers": 1025}, "workers", "1025"),
        ({"queue_size": 0}, "queue_size", "0"),
        ({"queue_size": "10"}, "queue_size", "'10'"),
        ({"on_full": "drop"}, "on_full", "'drop'"),
        ({"on_full": None}, "on_full", "None"),
        ({"block_timeout": -1}, "block_timeout", "-1"),
        ({"block_timeout": float("nan")}, "block_timeout", "nan"),
        ({"history": -1}, "history", "-1"),
        ({"history": 1.5}, "history", "1.5"),
        ({"drain_timeout": -1}, "drain_timeout", "-1"),
        ({"drain_timeout": None}, "drain_timeout", "None"),
        ({"idle_timeout": 0}, "idle_timeout", "0"),
        ({"idle_timeout": float("inf")}, "idle_timeout", "inf"),
        ({"abandon_timeout": -0.5}, "abandon_timeout", "-0.5"),
        ({"max_abandoned": -1}, "max_abandoned", "-1"),
        ({"eager": "yes"}, "eager", "'yes'"),
        ({"name": ""}, "name", "''"),
        ({"name": 7}, "name", "7"),
    ],
    ids=repr,
)
def test_runner_option_rejected(options: dict[str, Any], option: str, value: str) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Runner(**options)
    assert_message(info, "Runner", option, value)


def test_runner_hooks_not_a_list() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Runner(hooks="x")  # type: ignore[arg-type]
    assert_message(info, "Runner", "hooks", "'x'")


def test_runner_hook_without_any_hook_method() -> None:
    useless = object()
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Runner(hooks=[useless])
    assert_message(info, "hook", repr(useless), "before_enqueue")


def test_runner_hook_with_a_non_callable_event_attribute() -> None:
    class Broken:
        after_failure = "not a function"

    broken = Broken()
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Runner(hooks=[broken])
    assert_message(info, repr(broken), "after_failure")


def test_add_hook_rejects_an_object_without_hook_methods(real_runner: offload.Runner) -> None:
    useless = object()
    with pytest.raises(offload.ConfigurationError) as info:
        real_runner.add_hook(useless)
    assert_message(info, repr(useless))


def test_runner_clock_without_the_clock_methods() -> None:
    clock = object()
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Runner(clock=clock)  # type: ignore[arg-type]
    assert_message(info, "Runner", "clock", repr(clock), "monotonic")


def test_runner_settings_validate_like_the_runner() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.RunnerSettings(workers=0)
    assert_message(info, "workers", "0")


# -- configure() --------------------------------------------------------------------


def test_configure_unknown_option() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.configure(bogus=1)
    assert_message(info, "bogus", "workers")


def test_configure_invalid_value_changes_nothing() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.configure(workers=3, drain_timeout=-1)
    assert_message(info, "drain_timeout", "-1")
    offload.configure(workers=2)
    assert offload.default_runner().settings.workers == 2
    assert offload.default_runner().settings.drain_timeout == offload.RunnerSettings().drain_timeout


def test_configure_after_the_default_runner_started() -> None:
    offload.configure(workers=2, drain_timeout=5)
    assert offload.submit(plain_job).result(timeout=WAIT) == "ran"

    with pytest.raises(offload.ConfigurationError) as info:
        offload.configure(workers=3)
    assert_message(info, "workers=2", "3", "before the first task")

    # The same settings again (in any spelling that validates to the same value) are fine.
    offload.configure(workers=2)
    offload.configure(drain_timeout=5.0)
    offload.configure()
    assert offload.default_runner().settings.workers == 2


# -- submit() and handles ---------------------------------------------------------


@pytest.mark.parametrize("not_callable", [42, "plain_job", None])
def test_submit_non_callable(runner: offload.Runner, not_callable: object) -> None:
    with pytest.raises(offload.PayloadError) as info:
        offload.submit(not_callable)  # type: ignore[arg-type]
    assert_message(info, "submit", repr(not_callable))
    with pytest.raises(offload.PayloadError) as info:
        runner.submit(not_callable)  # type: ignore[arg-type]
    assert_message(info, "submit", repr(not_callable))
    assert runner.stats().submitted == 0


@pytest.mark.parametrize(("timeout", "error", "value"), [(-1, ValueError, "-1"), ("x", TypeError, "'x'")])
def test_handle_result_bad_timeout(runner: offload.Runner, timeout: object, error: type[Exception], value: str) -> None:
    handle = runner.submit(plain_job)
    assert handle.result(timeout=WAIT) == "ran"
    with pytest.raises(error, match=r"timeout") as info:
        handle.result(timeout=timeout)  # type: ignore[arg-type]
    assert_message(info, "result(timeout=", value)


@pytest.mark.parametrize(("timeout", "error", "value"), [(-1, ValueError, "-1"), ("x", TypeError, "'x'")])
def test_handle_wait_and_join_bad_timeout(
    runner: offload.Runner, timeout: object, error: type[Exception], value: str
) -> None:
    handle = runner.submit(plain_job)
    assert handle.wait(timeout=WAIT)
    with pytest.raises(error, match=r"timeout") as info:
        handle.wait(timeout=timeout)  # type: ignore[arg-type]
    assert_message(info, "wait(timeout=", value)
    with pytest.raises(error, match=r"timeout") as info:
        runner.join(timeout=timeout)  # type: ignore[arg-type]
    assert_message(info, "join(timeout=", value)


def test_add_done_callback_non_callable(runner: offload.Runner) -> None:
    handle = runner.submit(plain_job)
    with pytest.raises(TypeError) as info:
        handle.add_done_callback(42)  # type: ignore[arg-type]
    assert_message(info, qualified(plain_job), "42")
    assert handle.result(timeout=WAIT) == "ran"


@pytest.mark.parametrize(("delay", "error"), [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_retry_bad_delay(delay: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"delay") as info:
        offload.Retry(delay=delay)  # type: ignore[arg-type]
    assert_message(info, repr(delay))


# -- hooks ----------------------------------------------------------------------------


def test_on_unknown_event() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.on("nope")
    assert_message(info, "'nope'", "after_failure")


def test_on_decorating_a_non_callable() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.on("after_failure")(42)  # type: ignore[arg-type]
    assert_message(info, "after_failure", "42")


def test_off_unknown_event() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.off("nope", plain_job)
    assert_message(info, "'nope'")


# -- offload.Thread ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "option", "value"),
    [
        ({"target": 42}, TypeError, "target", "42"),
        ({"target": plain_job, "args": 5}, TypeError, "args", "5"),
        ({"target": plain_job, "args": "ab"}, TypeError, "args", "'ab'"),
        ({"target": plain_job, "kwargs": [("user", 1)]}, TypeError, "kwargs", "[('user', 1)]"),
        ({"target": plain_job, "name": 5}, TypeError, "name", "5"),
        ({"group": 1, "target": plain_job}, ValueError, "group", "1"),
    ],
    ids=["target=42", "args=5", "args='ab'", "kwargs=list", "name=5", "group=1"],
)
def test_thread_bad_arguments(kwargs: dict[str, Any], error: type[Exception], option: str, value: str) -> None:
    with pytest.raises(error, match=option) as info:
        offload.Thread(**kwargs)
    assert_message(info, "offload.Thread", option, value)


def test_thread_started_twice(runner: offload.Runner) -> None:
    thread = offload.Thread(target=plain_job)
    handle = thread.start()
    thread.join(timeout=WAIT)
    assert not thread.is_alive()
    assert handle.result(timeout=0) == "ran"
    with pytest.raises(RuntimeError, match=r"can only be started once"):
        thread.start()
    assert runner.stats().submitted == 1


def test_thread_joined_before_start(runner: offload.Runner) -> None:
    thread = offload.Thread(target=plain_job)
    with pytest.raises(RuntimeError, match=r"before it is started"):
        thread.join(timeout=1)
    with pytest.raises(ValueError, match=r"join\(timeout=\.\.\.\).*-1"):
        thread.join(timeout=-1)
    assert runner.stats().submitted == 0


# -- lookups and shutdown ----------------------------------------------------------------


def test_runner_get_with_a_non_string_id(real_runner: offload.Runner) -> None:
    with pytest.raises(TypeError) as info:
        real_runner.get(123)  # type: ignore[arg-type]
    assert_message(info, "get()", "123")


def test_offload_get_with_a_non_string_id_once_the_default_runner_exists() -> None:
    offload.default_runner()
    with pytest.raises(TypeError) as info:
        offload.get(123)  # type: ignore[arg-type]
    assert_message(info, "get()", "123")


def test_offload_get_with_a_non_string_id_before_the_default_runner_exists() -> None:
    # The same mistake must be reported whether or not a task was submitted yet.
    with pytest.raises(TypeError) as info:
        offload.get(123)  # type: ignore[arg-type]
    assert_message(info, "get()", "123")


@pytest.mark.parametrize(
    ("kwargs", "option", "value"),
    [
        ({"wait": "yes"}, "wait", "'yes'"),
        ({"wait": 1}, "wait", "1"),
        ({"cancel_pending": "no"}, "cancel_pending", "'no'"),
        ({"timeout": -1}, "timeout", "-1"),
        ({"timeout": "5"}, "timeout", "'5'"),
    ],
    ids=repr,
)
def test_runner_shutdown_bad_arguments(
    real_runner: offload.Runner, kwargs: dict[str, Any], option: str, value: str
) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        real_runner.shutdown(**kwargs)
    assert_message(info, "shutdown()", option, value)
    assert not real_runner.closed, "a rejected shutdown() must not start shutting down"
    assert real_runner.submit(plain_job).result(timeout=WAIT) == "ran"


def test_offload_shutdown_bad_arguments_once_the_default_runner_exists() -> None:
    assert offload.submit(plain_job).result(timeout=WAIT) == "ran"
    with pytest.raises(offload.ConfigurationError) as info:
        offload.shutdown(wait="yes")  # type: ignore[arg-type]
    assert_message(info, "shutdown()", "wait", "'yes'")


def test_offload_shutdown_bad_arguments_before_the_default_runner_exists() -> None:
    # Validation must not depend on whether a task was submitted yet.
    with pytest.raises(offload.ConfigurationError) as info:
        offload.shutdown(wait="yes")  # type: ignore[arg-type]
    assert_message(info, "shutdown()", "wait", "'yes'")


# -- install_signal_handlers -------------------------------------------------------------


def test_install_signal_handlers_from_a_non_main_thread() -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            offload.install_signal_handlers()
        except BaseException as exc:
            errors.append(exc)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=install, name="not-main")
    thread.start()
    thread.join(timeout=WAIT)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], offload.ConfigurationError)
    assert "main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("bad", [99999, -1, 0, "SIGTERM", 15.0])
def test_install_signal_handlers_invalid_signal(bad: object) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(offload.ConfigurationError) as info:
        offload.install_signal_handlers((signal.SIGTERM, bad))  # type: ignore[arg-type]
    assert_message(info, "install_signal_handlers()", repr(bad))
    assert signal.getsignal(signal.SIGTERM) is before, "no handler may be installed when one signal is invalid"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_install_signal_handlers_uncatchable_signal() -> None:
    # SIGKILL is a valid signal number but cannot be handled: the docstring
    # promises ConfigurationError for a bad signal, and nothing half-installed.
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(offload.ConfigurationError) as info:
            offload.install_signal_handlers((signal.SIGTERM, signal.SIGKILL))
        assert_message(info, "install_signal_handlers()", "SIGKILL")
        assert signal.getsignal(signal.SIGTERM) is before, "SIGTERM's handler was replaced although the call failed"
    finally:
        signal.signal(signal.SIGTERM, before)


# -- durations beyond what the platform can wait ------------------------------------------
#
# threading.TIMEOUT_MAX (about 292 years on Linux) bounds every wait. A value past
# it must either be refused up front (ConfigurationError naming it) or work.

HUGE = threading.TIMEOUT_MAX * 2


def refused_or_made(make: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(made, None)``, or ``(None, message)`` if ``make`` raised ConfigurationError."""
    try:
        return make(), None
    except offload.ConfigurationError as exc:
        return None, str(exc)


class _SignallingClock(offload.Clock):
    """The real clock, telling the test when the runner starts a timed wait."""

    def __init__(self) -> None:
        self.waiting = threading.Event()

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        self.waiting.set()
        super().wait(cond, deadline)


def test_huge_drain_timeout_is_refused_or_drains() -> None:
    clock = _SignallingClock()
    runner, refusal = refused_or_made(
        lambda: offload.Runner(workers=1, drain_timeout=HUGE, idle_timeout=0.5, clock=clock, name="offload-huge-drain")
    )
    if refusal is not None:
        assert "drain_timeout" in refusal
        return
    # The only timed wait of this runner is the drain's: the task ends once it began.
    handle = runner.submit(clock.waiting.wait, WAIT)
    runner.shutdown(wait=True)
    assert handle.result(timeout=WAIT) is True
    assert runner.stats().succeeded == 1


@pytest.mark.parametrize(
    "when",
    [{"countdown": HUGE}, {"eta": datetime(3000, 1, 1, tzinfo=timezone.utc)}],
    ids=["countdown", "eta"],
)
def test_far_future_start_is_refused_or_keeps_the_scheduler_alive(
    real_runner: offload.Runner, when: dict[str, Any]
) -> None:
    with use_runner(real_runner):
        far, refusal = refused_or_made(lambda: apply_target.apply_async(**when))
        if refusal is not None:
            assert next(iter(when)) in refusal
            return
        near = apply_target.apply_async((1,), countdown=0.01)
        assert near.result(timeout=WAIT) == 1, "the scheduler thread stopped serving timers"
        assert far.state is offload.State.SCHEDULED


def test_huge_task_timeout_is_refused_or_keeps_the_scheduler_alive(real_runner: offload.Runner) -> None:
    def patient() -> str:
        return "done"

    declared, refusal = refused_or_made(lambda: offload.task(name="tests.validation.patient", timeout=HUGE)(patient))
    if refusal is not None:
        assert "timeout" in refusal
        return
    assert real_runner.submit(declared).result(timeout=WAIT) == "done"
    with use_runner(real_runner):
        near = apply_target.apply_async((1,), countdown=0.01)
        assert near.result(timeout=WAIT) == 1, "the scheduler thread stopped serving timers"


# -- request-bound arguments ---------------------------------------------------------------
#
# Classes named like Django's and werkzeug's: offload recognises them by module
# and qualname along the MRO and never imports the frameworks.


class HttpRequest:
    __module__ = "django.http.request"
    __qualname__ = "HttpRequest"


class WSGIRequest(HttpRequest):
    __module__ = "django.core.handlers.wsgi"
    __qualname__ = "WSGIRequest"


class User:
    pk = 7


class LazyObject:
    """Like Django's: it lies about ``__class__`` to look like the wrapped object."""

    __module__ = "django.utils.functional"
    __qualname__ = "LazyObject"

    def __init__(self, factory: Callable[[], object]) -> None:
        object.__setattr__(self, "_factory", factory)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._factory())


class SimpleLazyObject(LazyObject):
    __module__ = "django.utils.functional"
    __qualname__ = "SimpleLazyObject"


class LocalProxy:
    """Like werkzeug's: it too lies about ``__class__``."""

    __module__ = "werkzeug.local"
    __qualname__ = "LocalProxy"

    def __init__(self, get: Callable[[], object]) -> None:
        object.__setattr__(self, "_get", get)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._get())


REQUEST_BOUND = [
    pytest.param(HttpRequest, "Django HttpRequest", "pk", id="HttpRequest"),
    pytest.param(WSGIRequest, "Django HttpRequest", "pk", id="HttpRequest-subclass"),
    pytest.param(lambda: LazyObject(User), "Django lazy object", "pk", id="LazyObject"),
    pytest.param(lambda: SimpleLazyObject(User), "Django lazy object", "pk", id="SimpleLazyObject"),
    pytest.param(lambda: LocalProxy(User), "werkzeug LocalProxy", "current_user.id", id="LocalProxy"),
]


@offload.task(name="tests.validation.notify")
def notify(user: object = None) -> str:
    return "notified"


def _plain_name() -> str:
    return qualified(plain_job)


# (how the value is passed, the task name in the message, where the value is)
ENTRY_POINTS: list[Any] = [
    pytest.param(lambda r, v: r.submit(plain_job, v), _plain_name, "args[0]", id="Runner.submit-positional"),
    pytest.param(lambda r, v: r.submit(plain_job, user=v), _plain_name, "kwargs['user']", id="Runner.submit-keyword"),
    pytest.param(lambda r, v: offload.submit(plain_job, v), _plain_name, "args[0]", id="offload.submit"),
    pytest.param(
        lambda r, v: r.submit(notify, v), lambda: "'tests.validation.notify'", "args[0]", id="Runner.submit-task"
    ),
    pytest.param(lambda r, v: notify.delay(v), lambda: "'tests.validation.notify'", "args[0]", id="delay-positional"),
    pytest.param(
        lambda r, v: notify.enqueue(user=v), lambda: "'tests.validation.notify'", "kwargs['user']", id="enqueue-kw"
    ),
    pytest.param(
        lambda r, v: notify.apply_async(kwargs={"user": v}, countdown=5),
        lambda: "'tests.validation.notify'",
        "kwargs['user']",
        id="apply_async-kwargs",
    ),
    pytest.param(
        lambda r, v: offload.Thread(target=plain_job, args=(v,)).start(), _plain_name, "args[0]", id="Thread-args"
    ),
    pytest.param(
        lambda r, v: offload.Thread(target=plain_job, kwargs={"user": v}).start(),
        _plain_name,
        "kwargs['user']",
        id="Thread-kwargs",
    ),
]


@pytest.mark.parametrize(("make", "what", "fix"), REQUEST_BOUND)
@pytest.mark.parametrize(("call", "task_name", "where"), ENTRY_POINTS)
def test_request_bound_argument_rejected(
    runner: offload.Runner,
    make: Callable[[], object],
    what: str,
    fix: str,
    call: Callable[[offload.Runner, object], object],
    task_name: Callable[[], str],
    where: str,
) -> None:
    value = make()
    with pytest.raises(offload.PayloadError) as info:
        call(runner, value)
    assert_message(info, task_name(), where, what, fix)
    stats = runner.stats()
    assert stats.submitted == stats.queued == stats.scheduled == 0, "nothing may be queued"


def test_request_bound_argument_found_after_plain_ones(runner: offload.Runner) -> None:
    with pytest.raises(offload.PayloadError) as info:
        runner.submit(plain_job, 1, "x", None, SimpleLazyObject(User), flag=True)
    assert_message(info, "args[3]", "pk")


def test_the_suggested_fix_is_accepted(runner: offload.Runner) -> None:
    lazy_user = SimpleLazyObject(User)
    assert isinstance(lazy_user, User), "the fake must lie about its class like Django's"
    assert notify.delay(user=User.pk).result(timeout=WAIT) == "notified"


def test_real_werkzeug_local_proxy_rejected(runner: offload.Runner) -> None:
    local = pytest.importorskip("werkzeug.local")
    proxy = local.LocalProxy(lambda: User())
    with pytest.raises(offload.PayloadError) as info:
        notify.delay(user=proxy)
    assert_message(info, "'tests.validation.notify'", "kwargs['user']", "LocalProxy")
    assert runner.stats().submitted == 0


# -- database rows: passed with a warning in memory mode ------------------------------------


class Model:
    __module__ = "django.db.models.base"
    __qualname__ = "Model"
    pk = 42


class Order(Model):
    __module__ = "shop.models"
    __qualname__ = "Order"


class QuerySet:
    __module__ = "django.db.models.query"
    __qualname__ = "QuerySet"


STALE_PRONE = [
    pytest.param(Order, "Django model instance", "order.pk", id="model"),
    pytest.param(QuerySet, "Django QuerySet", "primary keys", id="queryset"),
]


@pytest.mark.parametrize(("make", "what", "fix"), STALE_PRONE)
@pytest.mark.parametrize(("call", "task_name", "where"), ENTRY_POINTS)
def test_database_rows_pass_with_a_warning_at_the_callers_line(
    runner: offload.Runner,
    make: Callable[[], object],
    what: str,
    fix: str,
    call: Callable[[offload.Runner, object], object],
    task_name: Callable[[], str],
    where: str,
) -> None:
    with pytest.warns(offload.PayloadWarning) as caught:
        call(runner, make())
    assert len(caught) == 1
    message = str(caught[0].message)
    for part in (task_name(), where, what, fix):
        assert part in message, (part, message)
    assert caught[0].filename == __file__, "the warning points at the line that enqueued"
    assert runner.stats().submitted == 1, "in memory mode the task is accepted"


@pytest.mark.parametrize(("make", "what", "fix"), STALE_PRONE)
def test_database_rows_are_refused_by_a_journal_with_the_fix(
    tmp_path: Path, make: Callable[[], object], what: str, fix: str
) -> None:
    with offload.Runner(workers=1, journal=str(tmp_path / "j.sqlite3")) as journaled:
        with pytest.raises(offload.PayloadError) as info:
            journaled.submit(notify, user=make())
        assert_message(info, "'tests.validation.notify'", "kwargs['user']", what, fix, "journal")
        assert journaled.stats().submitted == 0
