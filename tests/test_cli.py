"""The ``offload`` command: help, bad arguments, and ``offload demo`` run for real.

The demo runs in a child interpreter (``python -m offload``), exactly as a user
starts it; its scenario is planned from the seed, so the outcome counts it prints
are checked against the plan itself.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from offload import Runner, State
from offload.cli import demo

pytestmark = pytest.mark.subprocess

CHILD_TIMEOUT = 60.0


def offload_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload", *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def planned_failures(jobs: list[demo.Job]) -> dict[str, int]:
    """Tasks the plan makes fail for good, per task name."""
    failing: dict[str, int] = {}
    for job in jobs:
        options = job.task.options
        if job.task is demo.rebuild_search_index:
            fails = True  # loops past its timeout, no retries
        elif job.task is demo.make_thumbnail:
            fails = bool(job.args[1])  # a corrupt upload is a ValueError: not retried
        else:
            fails = job.failures > options.retries
        if fails:
            failing[options.name] = failing.get(options.name, 0) + 1
    return failing


def row(output: str, name: str) -> list[int]:
    """The numbers of one row of the summary table."""
    match = re.search(rf"^{re.escape(name)}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", output, re.M)
    assert match, f"no summary row for {name} in:\n{output}"
    return [int(value) for value in match.groups()]


def test_help_lists_the_demo() -> None:
    done = offload_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout


def test_without_a_command_prints_help_and_fails() -> None:
    done = offload_cli()
    assert done.returncode == 2
    assert "usage: offload" in done.stdout


def test_demo_help_documents_its_options() -> None:
    done = offload_cli("demo", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--tasks", "--workers", "--rate", "--seed", "--log", "--serve", "--port", "--rounds"):
        assert option in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "0"], "--tasks"),
        (["--tasks", "9"], "--tasks"),
        (["--workers", "0"], "workers"),
        (["--workers", "-3"], "workers"),
        (["--rate", "0"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--tasks", "many"], "--tasks"),
        (["--serve", "--port", "70000"], "--port"),
        (["--serve", "--rounds", "-1"], "--rounds"),
    ],
)
def test_demo_refuses_bad_arguments_by_name(args: list[str], message: str) -> None:
    done = offload_cli("demo", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_the_planned_scenario_and_exits_0() -> None:
    done = offload_cli("demo", "--tasks", "80", "--rate", "2000", "--seed", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = demo.plan(80, 3)
    failing = planned_failures(jobs)
    assert failing["demo.rebuild_search_index"] == 1
    total = row(done.stdout, "total")
    assert total[:3] == [80, 80 - sum(failing.values()), sum(failing.values())]
    for name, count in failing.items():
        assert row(done.stdout, name)[2] == count
    retried = sum(min(job.failures, job.task.options.retries) for job in jobs)
    assert total[3] == retried
    # The timeout was enforced on a pure-Python loop, and reported with the task's frame.
    assert "demo.rebuild_search_index: 1 x offload.TaskTimeoutError" in done.stdout
    assert "in rebuild_search_index" in done.stdout
    assert "exceeded its timeout of 1s" in done.stdout
    # Not a terminal: progress is one line per second, never a carriage return.
    assert "\r" not in done.stdout
    assert "submitted" in done.stdout
    # Without --log the failures are counted, not printed over the live view.
    assert "Traceback" not in done.stderr
    assert "run with --log" in done.stdout


def test_demo_with_log_prints_the_failure_records() -> None:
    done = offload_cli("demo", "--tasks", "20", "--rate", "2000", "--seed", "3", "--log")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR offload.task: task demo.rebuild_search_index" in done.stderr


def test_demo_default_run_exits_0() -> None:
    done = offload_cli("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "total")[0] == 300


def test_short_traceback_keeps_the_last_frames_and_the_error() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in outer\n    outer()\n'
        '  File "b.py", line 2, in middle\n    middle()\n'
        '  File "c.py", line 3, in inner\n    raise ValueError("x")\n'
        "ValueError: x\n"
    )
    assert demo.short_traceback(text, frames=2) == [
        "Traceback (1 outer frame(s) omitted):",
        '  File "b.py", line 2, in middle',
        "    middle()",
        '  File "c.py", line 3, in inner',
        '    raise ValueError("x")',
        "ValueError: x",
    ]
    assert demo.short_traceback("KeyError: 'k'\n") == ["KeyError: 'k'"]


def test_scenario_in_process_reports_every_task() -> None:
    runner = Runner(workers=4)  # real clock: the retries' backoff (50-400 ms) elapses for real
    jobs = [demo.Job(demo.render_invoice_pdf, (i,)) for i in range(12)]
    jobs.append(demo.Job(demo.send_welcome_email, (1,), failures=2, key="mail:1"))
    out = io.StringIO()
    assert demo.scenario(runner, jobs, rate=1e5, show_log=False, out=out) == 0
    text = out.getvalue()
    assert row(text, "total")[:4] == [13, 13, 0, 2]
    assert "Failures: 0 task(s)" in text
    assert runner.stats().counts[State.SUCCEEDED] == 13


def test_demo_serve_shows_the_running_scenario_on_the_dashboard() -> None:
    command = [sys.executable, "-m", "offload", "demo", "--serve", "--port", "0", "--tasks", "30", "--rate", "500"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # printed once the dashboard listens
            match = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", first)
            assert match, first
            url = match.group(1)
            while "round 1:" not in (line := proc.stdout.readline()):  # one round has finished
                assert line, "the demo stopped before its first round ended"
            with urllib.request.urlopen(url + "api/stats", timeout=CHILD_TIMEOUT) as reply:
                stats = json.loads(reply.read())
            assert stats["counts"]["succeeded"] + stats["counts"]["failed"] >= 30
            with urllib.request.urlopen(url, timeout=CHILD_TIMEOUT) as reply:
                assert b"offload" in reply.read()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, err
    assert "stopping" in out
