"""Pins the public surface: adding or removing a name is a deliberate change."""

from __future__ import annotations

import offload


def test_all_is_pinned():
    assert sorted(offload.__all__) == sorted(
        [
            "ALL_COMPLETED",
            "EVENTS",
            "Attempt",
            "FIRST_COMPLETED",
            "FIRST_EXCEPTION",
            "Clock",
            "ConfigurationError",
            "DoneAndNotDone",
            "EnqueueError",
            "ErrorInfo",
            "Hook",
            "JournalCorruptError",
            "JournalError",
            "JournalWriteError",
            "OffloadError",
            "PayloadError",
            "PayloadWarning",
            "QueueFullError",
            "RetriesExhaustedError",
            "Retry",
            "Runner",
            "RunnerClosedError",
            "RunnerSettings",
            "RunnerStats",
            "State",
            "Task",
            "TaskCancelledError",
            "TaskContext",
            "TaskExpiredError",
            "TaskHandle",
            "TaskOptions",
            "TaskTimeoutError",
            "Thread",
            "__version__",
            "as_completed",
            "configure",
            "default_runner",
            "get",
            "install_signal_handlers",
            "off",
            "on",
            "periodic",
            "periodic_tasks",
            "registered_tasks",
            "shutdown",
            "start",
            "stats",
            "submit",
            "task",
            "wait",
        ]
    )


def test_every_exported_name_exists_and_is_documented():
    for name in offload.__all__:
        obj = getattr(offload, name)
        if callable(obj) and not isinstance(obj, str):
            assert obj.__doc__, f"offload.{name} has no docstring"


def test_error_tree():
    assert issubclass(offload.ConfigurationError, offload.OffloadError)
    assert issubclass(offload.PayloadError, offload.EnqueueError)
    assert issubclass(offload.QueueFullError, offload.EnqueueError)
    assert issubclass(offload.RunnerClosedError, offload.EnqueueError)
    assert issubclass(offload.TaskTimeoutError, offload.OffloadError)
    assert issubclass(offload.TaskTimeoutError, TimeoutError)
    assert issubclass(offload.JournalWriteError, offload.JournalError)
    assert issubclass(offload.JournalCorruptError, offload.JournalError)
    assert issubclass(offload.RetriesExhaustedError, offload.OffloadError)
    assert not issubclass(offload.Retry, offload.OffloadError)  # flow control, not an error
    assert issubclass(offload.TaskExpiredError, offload.TaskCancelledError)


def test_states():
    assert [s.value for s in offload.State] == [
        "pending",
        "queued",
        "scheduled",
        "running",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
        "interrupted",
    ]
    assert str(offload.State.FAILED) == "failed"
    assert offload.State.FAILED.finished and not offload.State.RETRYING.finished


def test_no_required_dependencies():
    from importlib.metadata import requires

    required = [r for r in (requires("offload") or []) if "extra ==" not in r]
    assert required == []
