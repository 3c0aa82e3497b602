"""Periodic tasks, stepped with the fake clock: every=, cron=, missed runs, one
beat per process, and bad input."""

from __future__ import annotations

import queue
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import offload
from offload import ConfigurationError, Runner, RunnerClosedError, _periodic
from offload.testing import FakeClock

from .conftest import WAIT

# 2026-01-01T00:00:00Z: a multiple of every tick length used here
START = 1_767_225_600.0


@pytest.fixture(autouse=True)
def isolated_schedules() -> Iterator[None]:
    saved = dict(_periodic._schedules)
    _periodic._schedules.clear()
    try:
        yield
    finally:
        beat = _periodic._beat
        if beat is not None:
            _periodic.stop_beat(beat.runner)
        _periodic._schedules.clear()
        _periodic._schedules.update(saved)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=START)


@pytest.fixture
def runner(clock: FakeClock) -> Iterator[Runner]:
    r = Runner(workers=2, clock=clock, name="offload-periodic")
    yield r
    r.shutdown(wait=True, cancel_pending=True, timeout=WAIT)


def ticker(name: str, clock: FakeClock, **schedule) -> queue.Queue[float]:
    ran: queue.Queue[float] = queue.Queue()

    @offload.periodic(name=name, **schedule)
    def tick() -> None:
        ran.put(clock.time())

    return ran


def step(clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    beat = _periodic.current_beat()
    assert beat is not None
    assert beat.wait_settled(clock.time(), WAIT)


def test_every_fires_on_each_tick(runner, clock, tmp_path):
    ran = ticker("tests.periodic.every", clock, every=60)
    runner.start(state_dir=tmp_path)
    step(clock, 59)
    assert ran.empty()
    step(clock, 1)
    assert ran.get(timeout=WAIT) == START + 60
    step(clock, 60)
    assert ran.get(timeout=WAIT) == START + 120
    assert runner.join(WAIT)
    assert ran.empty()


def test_a_late_beat_fires_the_latest_tick_once(runner, clock, tmp_path):
    ran = ticker("tests.periodic.late", clock, every=10)
    runner.start(state_dir=tmp_path)
    step(clock, 95)  # nine ticks passed at once
    assert ran.get(timeout=WAIT) == START + 95
    assert runner.join(WAIT)
    assert ran.empty()
    assert _periodic.TickClaims(tmp_path).last("tests.periodic.late") == START + 90
    step(clock, 5)
    assert ran.get(timeout=WAIT) == START + 100


def test_one_beat_per_process_however_many_runners(clock, tmp_path):
    ran = ticker("tests.periodic.once", clock, every=30)
    with (
        Runner(workers=1, clock=clock, name="offload-periodic-a") as a,
        Runner(workers=1, clock=clock, name="offload-periodic-b") as b,
    ):
        assert a.start(state_dir=tmp_path) is a
        b.start(state_dir=tmp_path)
        assert _periodic.current_beat().runner is a
        step(clock, 30)
        assert ran.get(timeout=WAIT) == START + 30
        assert a.join(WAIT) and b.join(WAIT)
        assert ran.empty()
        assert a.stats().submitted == 1 and b.stats().submitted == 0


def test_missed_ticks_are_skipped_by_default(runner, clock, tmp_path):
    _periodic.TickClaims(tmp_path).claim("tests.periodic.skip", START - 3600)  # last run an hour ago
    ran = ticker("tests.periodic.skip", clock, every=60)
    runner.start(state_dir=tmp_path)
    assert _periodic.current_beat().wait_settled(clock.time(), WAIT)
    assert runner.join(WAIT)
    assert ran.empty()
    step(clock, 60)
    assert ran.get(timeout=WAIT) == START + 60


def test_missed_ticks_run_once_at_start(runner, clock, tmp_path):
    _periodic.TickClaims(tmp_path).claim("tests.periodic.run_once", START - 3600)
    ran = ticker("tests.periodic.run_once", clock, every=60, missed="run_once")
    runner.start(state_dir=tmp_path)
    assert ran.get(timeout=WAIT) == START  # one run for the 60 missed ticks
    assert runner.join(WAIT)
    assert ran.empty()
    step(clock, 60)
    assert ran.get(timeout=WAIT) == START + 60


def test_run_once_without_a_missed_tick_does_not_run(runner, clock, tmp_path):
    _periodic.TickClaims(tmp_path).claim("tests.periodic.uptodate", START)
    ran = ticker("tests.periodic.uptodate", clock, every=60, missed="run_once")
    runner.start(state_dir=tmp_path)
    assert _periodic.current_beat().wait_settled(clock.time(), WAIT)
    assert runner.join(WAIT)
    assert ran.empty()


def test_a_tick_claimed_by_another_process_is_skipped(runner, clock, tmp_path):
    ran = ticker("tests.periodic.claimed", clock, every=60)
    runner.start(state_dir=tmp_path)
    assert _periodic.TickClaims(tmp_path).claim("tests.periodic.claimed", START + 60)  # "another process"
    step(clock, 60)
    assert runner.join(WAIT)
    assert ran.empty()
    assert _periodic.current_beat().skipped == 1
    step(clock, 60)
    assert ran.get(timeout=WAIT) == START + 120


def test_cron_in_a_time_zone(runner, clock, tmp_path):
    ran = ticker("tests.periodic.cron", clock, cron="30 1 * * *", tz="Europe/Paris")  # 01:30 Paris = 00:30 UTC
    runner.start(state_dir=tmp_path)
    step(clock, 29 * 60)
    assert ran.empty()
    step(clock, 60)
    fired = ran.get(timeout=WAIT)
    assert datetime.fromtimestamp(fired, timezone.utc) == datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)


def test_cron_every_five_minutes(runner, clock, tmp_path):
    ran = ticker("tests.periodic.cron5", clock, cron="*/5 * * * *")
    runner.start(state_dir=tmp_path)
    for n in range(1, 4):
        step(clock, 300)
        assert ran.get(timeout=WAIT) == START + 300 * n


def test_declared_after_the_beat_started(runner, clock, tmp_path):
    first = ticker("tests.periodic.first", clock, every=60)
    runner.start(state_dir=tmp_path)
    later = ticker("tests.periodic.later", clock, every=20)
    step(clock, 20)
    assert later.get(timeout=WAIT) == START + 20
    step(clock, 40)
    assert first.get(timeout=WAIT) == START + 60


def test_shutdown_stops_the_beat_and_start_after_it_raises(clock, tmp_path):
    ticker("tests.periodic.stop", clock, every=60)
    runner = Runner(workers=1, clock=clock, name="offload-periodic-stop")
    runner.start(state_dir=tmp_path)
    beat = _periodic.current_beat()
    runner.shutdown()
    assert _periodic.current_beat() is None
    assert not beat.thread.is_alive()
    with pytest.raises(RunnerClosedError, match=r"Runner\.start"):
        runner.start()


def test_start_without_periodic_tasks_starts_no_beat(runner, tmp_path):
    assert runner.start(state_dir=tmp_path) is runner
    assert _periodic.current_beat() is None


def test_periodic_task_keeps_task_options():
    @offload.periodic(every=60, name="tests.periodic.options", retries=3, timeout=10)
    def job() -> None:
        pass

    assert isinstance(job, offload.Task)
    assert job.options.retries == 3 and job.options.timeout == 10
    assert "tests.periodic.options" in offload.periodic_tasks()


def test_periodic_on_a_declared_task():
    @offload.periodic(every=60)
    @offload.task(name="tests.periodic.stacked")
    def job() -> None:
        pass

    assert offload.periodic_tasks()["tests.periodic.stacked"].task is job


def test_cron_without_croniter_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ConfigurationError, match=r"task 'tests.periodic.nocron': .*pip install 'offload\[cron\]'"):
        offload.periodic(cron="* * * * *", name="tests.periodic.nocron")(lambda: None)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"every": 0}, "every must be a finite number of seconds > 0"),
        ({"every": -5}, "every must be a finite number of seconds > 0"),
        ({"every": "1m"}, "every must be a number of seconds"),
        ({}, "@periodic needs exactly one of every= or cron="),
        ({"every": 60, "cron": "* * * * *"}, "@periodic needs exactly one of every= or cron="),
        ({"cron": "61 * * * *"}, "cron must be a valid cron expression"),
        ({"cron": "every monday"}, "cron must be a valid cron expression"),
        ({"cron": 5}, "cron must be a valid cron expression"),
        ({"cron": "0 0 30 2 *"}, "cron '0 0 30 2 \\*' never matches a date"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "tz must be a time zone name"),
        ({"cron": "* * * * *", "tz": 2}, "tz must be a time zone name"),
        ({"cron": "* * * * *", "tz": "Europe"}, "tz must be a time zone name"),
        ({"every": 60, "tz": "UTC"}, "tz applies to cron= only"),
        ({"every": 60, "missed": "all"}, "missed must be one of 'skip', 'run_once'"),
        ({"every": 60, "retries": -1}, "retries must be >= 0"),
    ],
)
def test_bad_schedules(schedule, message):
    with pytest.raises(ConfigurationError, match=r"task 'tests.periodic.bad': " + message):
        offload.periodic(name="tests.periodic.bad", **schedule)(lambda: None)
    assert "tests.periodic.bad" not in offload.periodic_tasks()
    assert "tests.periodic.bad" not in offload.registered_tasks()  # nothing half-declared


def test_a_periodic_task_may_not_require_arguments():
    def needs(account_id: int) -> None:
        pass

    with pytest.raises(ConfigurationError, match="called without arguments, but it requires account_id"):
        offload.periodic(every=60, name="tests.periodic.args")(needs)

    def takes_context_only(context, verbose=False) -> None:
        pass

    assert offload.periodic(every=60, name="tests.periodic.ctx")(takes_context_only).options.bind


def test_periodic_must_decorate_a_function():
    with pytest.raises(ConfigurationError, match="@periodic must decorate a function"):
        offload.periodic(every=60)(42)


def test_start_checks_its_flag(runner):
    with pytest.raises(ConfigurationError, match=r"Runner\.start\(\): periodic must be True or False"):
        runner.start(periodic="yes")


def test_task_options_on_both_decorators_are_refused():
    declared = offload.task(name="tests.periodic.both")(lambda: None)
    with pytest.raises(ConfigurationError, match="not to both"):
        offload.periodic(every=60, retries=2)(declared)


def test_unusable_state_dir(runner, tmp_path, clock):
    ticker("tests.periodic.dir", clock, every=60)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot use state_dir"):
        runner.start(state_dir=blocker / "sub")


def test_tick_claims_are_exclusive(tmp_path: Path):
    claims = _periodic.TickClaims(tmp_path)
    assert claims.last("x") is None
    assert claims.claim("x", 100.0)
    assert not claims.claim("x", 100.0)
    assert not claims.claim("x", 50.0)
    assert claims.claim("x", 160.0)
    assert claims.last("x") == 160.0


def test_unique_periodic_task_does_not_overlap(runner, clock, tmp_path):
    import threading

    gate = threading.Event()
    started: queue.Queue[float] = queue.Queue()

    @offload.periodic(every=60, name="tests.periodic.unique", unique=True)
    def slow() -> None:
        started.put(clock.time())
        assert gate.wait(WAIT)

    runner.start(state_dir=tmp_path)
    step(clock, 60)
    assert started.get(timeout=WAIT) == START + 60
    step(clock, 60)  # the first run is still going: this tick gets its handle
    assert runner.stats().submitted == 1
    gate.set()
    assert runner.join(WAIT)
    step(clock, 60)
    assert started.get(timeout=WAIT) == START + 180
    assert runner.stats().submitted == 2


def test_offload_start_runs_the_beat_on_the_default_runner(tmp_path):
    @offload.periodic(every=3600, name="tests.periodic.default")
    def hourly() -> None:
        pass

    runner = offload.start(state_dir=tmp_path)
    assert runner is offload.default_runner()
    beat = _periodic.current_beat()
    assert beat is not None and beat.runner is runner and beat.thread.is_alive()
    offload.shutdown()
    assert _periodic.current_beat() is None
    assert not beat.thread.is_alive()


def test_a_tick_refused_by_a_full_queue_is_logged_and_counted(clock, tmp_path, caplog):
    import threading

    gate = threading.Event()
    started = threading.Event()
    runner = Runner(workers=1, queue_size=1, clock=clock, name="offload-periodic-full")
    ticker("tests.periodic.full", clock, every=60)

    def busy() -> None:
        started.set()
        assert gate.wait(WAIT)

    runner.submit(busy)
    assert started.wait(WAIT)
    runner.submit(int)  # the queue is full now
    runner.start(state_dir=tmp_path)
    step(clock, 60)
    beat = _periodic.current_beat()
    assert beat.skipped == 1 and beat.fired == 0
    assert "tick 2026-01-01T00:01:00+00:00 not enqueued" in caplog.text
    assert "queue is full" in caplog.text
    gate.set()
    runner.shutdown(wait=True, timeout=WAIT)


def test_a_failing_schedule_stops_alone_and_the_beat_goes_on(runner, clock, tmp_path, caplog):
    good = ticker("tests.periodic.good", clock, every=60)
    broken = ticker("tests.periodic.broken", clock, every=60, missed="run_once")
    # Its state file cannot be read (a directory sits at its path): planning it fails.
    _periodic.TickClaims(tmp_path)._path("tests.periodic.broken").mkdir()
    runner.start(state_dir=tmp_path)
    step(clock, 60)
    assert good.get(timeout=WAIT) == START + 60
    assert "periodic task tests.periodic.broken: cannot plan its next tick" in caplog.text
    assert offload.periodic_tasks()["tests.periodic.broken"].next_at == float("inf")
    step(clock, 60)
    assert good.get(timeout=WAIT) == START + 120
    assert broken.empty()
