"""Prometheus metrics through the official ``prometheus_client`` (``offload[prometheus]``).

:class:`OffloadCollector` is a collector for a runner: gauges read from
``Runner.stats()`` at scrape time, plus per-task-name counters and a duration
histogram fed by a hook it installs on the runner (so they count from the
moment the collector is created). Register it on any registry, or let the
dashboard serve it at ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._hooks import Hook

if TYPE_CHECKING:
    from .._handle import TaskHandle
    from .._runner import Runner


def prometheus_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


#: Histogram buckets in seconds: background work spans milliseconds to minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


class _MetricsHook(Hook):
    """Counts outcomes and times attempts per task name (runs in the worker threads)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.outcomes = Counter(
            "offload_tasks",
            "Tasks that reached an outcome, by task name and outcome (succeeded, failed, retrying).",
            ["task", "outcome"],
            registry=None,
        )
        self.durations = Histogram(
            "offload_attempt_duration_seconds",
            "Run time of attempts, by task name.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self._local = threading.local()

    def before_attempt(self, handle: TaskHandle) -> None:
        self._local.started = time.perf_counter()

    def after_attempt(self, handle: TaskHandle, exc: BaseException | None) -> None:
        started = getattr(self._local, "started", None)
        if started is not None:  # None: an abandoned attempt, reported from the scheduler thread
            self._local.started = None
            self.durations.labels(handle.name).observe(time.perf_counter() - started)

    def after_success(self, handle: TaskHandle, result: Any) -> None:
        self.outcomes.labels(handle.name, "succeeded").inc()

    def after_failure(self, handle: TaskHandle, exc: BaseException) -> None:
        self.outcomes.labels(handle.name, "failed").inc()

    def after_retry_scheduled(self, handle: TaskHandle, exc: BaseException, delay: float) -> None:
        self.outcomes.labels(handle.name, "retrying").inc()


class OffloadCollector:
    """A ``prometheus_client`` collector for one runner.

    Exposes ``offload_tasks_total{task,outcome}``,
    ``offload_attempt_duration_seconds{task}`` (histogram), and from the
    runner's stats: ``offload_queue_depth``, ``offload_tasks_current{state}``,
    ``offload_workers_busy``, ``offload_workers_idle``, ``offload_threads``,
    ``offload_workers_max``, ``offload_abandoned_threads_total``,
    ``offload_retries_total``, ``offload_submitted_total``,
    ``offload_hook_errors_total``.

    Args:
        runner: the runner to observe; a hook is added to it.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.hook = _MetricsHook()
        runner.add_hook(self.hook)

    def close(self) -> None:
        """Remove the hook from the runner."""
        self.runner.remove_hook(self.hook)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield from self.hook.outcomes.collect()
        yield from self.hook.durations.collect()
        s = self.runner.stats()
        yield GaugeMetricFamily("offload_queue_depth", "Tasks queued, scheduled or waiting for a retry.", s.queue_depth)
        current = GaugeMetricFamily("offload_tasks_current", "Tasks in a non-final state now.", labels=["state"])
        for state, value in (
            ("queued", s.queued),
            ("scheduled", s.scheduled),
            ("running", s.running),
            ("retrying", s.retrying),
        ):
            current.add_metric([state], value)
        yield current
        yield GaugeMetricFamily("offload_workers_busy", "Worker threads running a task.", s.busy)
        yield GaugeMetricFamily("offload_workers_idle", "Worker threads waiting for work.", s.idle)
        yield GaugeMetricFamily("offload_threads", "Worker threads alive.", s.threads)
        yield GaugeMetricFamily("offload_workers_max", "Most worker threads at once.", s.workers)
        yield CounterMetricFamily(
            "offload_abandoned_threads", "Threads given up on after a timeout.", s.abandoned_threads
        )
        yield CounterMetricFamily("offload_retries", "Retries scheduled.", s.retries)
        yield CounterMetricFamily("offload_submitted", "Tasks accepted.", s.submitted)
        yield CounterMetricFamily("offload_cancelled", "Tasks cancelled or dropped before they ran.", s.cancelled)
        yield CounterMetricFamily("offload_hook_errors", "Hooks that raised.", s.hook_errors)


class Exposition:
    """A registry holding one :class:`OffloadCollector`, rendered for ``/metrics``."""

    def __init__(self, runner: Runner) -> None:
        from prometheus_client import CollectorRegistry

        self.collector = OffloadCollector(runner)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
