"""Prometheus metrics through the official client, and ``/metrics`` on the dashboard."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import offload
from offload import ConfigurationError, Runner
from offload.dashboard import OffloadCollector, create_app
from offload.dashboard import _metrics as metrics_module

from .conftest import WAIT
from .dashboard_support import TOKEN, running_dashboard


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@offload.task(name="tests.metrics.ok")
def ok() -> int:
    return 1


@offload.task(name="tests.metrics.bad")
def bad() -> None:
    raise ValueError("bad")


def test_collector_counts_outcomes_and_durations_per_task():
    runner = Runner(workers=2)
    collector = OffloadCollector(runner)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        handles = [runner.submit(ok) for _ in range(3)] + [runner.submit(bad)]
        assert all(h.wait(WAIT) for h in handles)
        values = samples(generate_latest(registry).decode())
    finally:
        collector.close()
        runner.shutdown(wait=True, timeout=WAIT)
    assert values[("offload_tasks_total", (("outcome", "succeeded"), ("task", "tests.metrics.ok")))] == 3
    assert values[("offload_tasks_total", (("outcome", "failed"), ("task", "tests.metrics.bad")))] == 1
    assert values[("offload_attempt_duration_seconds_count", (("task", "tests.metrics.ok"),))] == 3
    assert values[("offload_submitted_total", ())] == 4
    assert values[("offload_queue_depth", ())] == 0
    assert values[("offload_tasks_current", (("state", "running"),))] == 0
    assert values[("offload_abandoned_threads_total", ())] == 0
    assert not runner.remove_hook(collector.hook)  # close() removed it


def test_metrics_endpoint(runner: Runner):
    assert runner.submit(ok).wait(WAIT)  # before the collector: not counted per name
    with running_dashboard(runner, token=TOKEN) as client:
        assert client.get("/metrics").status == 401
        assert runner.submit(ok).wait(WAIT)
        reply = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    values = samples(reply.text)
    assert values[("offload_tasks_total", (("outcome", "succeeded"), ("task", "tests.metrics.ok")))] == 1
    assert values[("offload_submitted_total", ())] == 2


def test_without_prometheus_client(runner: Runner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics_module, "prometheus_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"pip install 'offload\[prometheus\]'"):
        create_app(runner=runner, metrics=True)
    with running_dashboard(runner) as client:
        reply = client.get("/metrics")
    assert reply.status == 404
    assert "prometheus_client" in reply.json()["error"]


def test_stopping_the_server_removes_its_metrics_hook(runner: Runner):
    before = len(runner._hooks.after_success)
    with running_dashboard(runner):
        assert len(runner._hooks.after_success) == before + 1
    assert len(runner._hooks.after_success) == before
