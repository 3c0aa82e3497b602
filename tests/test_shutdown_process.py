"""Shutdown in real child interpreters: the drain at interpreter exit, the drain
timeout, SIGTERM and SIGINT, idempotent shutdown() and fork().

Every child is a script written to ``tmp_path`` and run with ``sys.executable``;
every wait on it has a timeout. Children never sleep to synchronise: a task that
must still be running when the interpreter exits waits for an event that only
the exit sets (the ``on_shutdown`` hook of a second, idle runner, which offload
shuts down at exit too), and the parent waits for a ``ready`` line before it
sends a signal.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import WAIT

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork()"),
]

# Bound on a whole child run; children that work take well under a second.
CHILD_TIMEOUT = 30.0

# Prepended to every child: an event set when offload's drain at interpreter exit
# begins. ``exit_began`` is set by the on_shutdown hook of an idle runner: offload
# shuts every runner down at exit, and an idle one finishes at once.
PRELUDE = """\
import os
import sys
import threading

import offload

exit_began = threading.Event()


def say(*parts):
    # One write(2) per line: lines from several threads never interleave.
    os.write(1, (" ".join(map(str, parts)) + "\\n").encode())


class _ExitSignal(offload.Hook):
    def on_shutdown(self, runner):
        say("exit drain began")
        exit_began.set()


_sentinel = offload.Runner(workers=1, name="sentinel", hooks=[_ExitSignal()])
"""


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return script


def run_child(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = write_script(tmp_path, body)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=tmp_path
    )


@contextmanager
def started_child(tmp_path: Path, body: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A running child with unbuffered pipes, killed if the test leaves it running."""
    script = write_script(tmp_path, body)
    with subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        cwd=tmp_path,
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=CHILD_TIMEOUT)


def read_line(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> str:
    """One line of the child's stdout, read byte by byte so nothing is over-read."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the child printed no complete line within {timeout}s (got {line!r})"
        chunk = os.read(fd, 1)
        assert chunk, f"the child closed stdout (got {line!r}); exit code {proc.poll()}"
        line += chunk
    return line.decode()


def finish(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    return out.decode(), err.decode()


def lines(text: str) -> list[str]:
    return text.splitlines()


def json_line(text: str) -> dict[str, Any]:
    """The one JSON object a child printed among its other lines."""
    found = [line for line in text.splitlines() if line.startswith("{")]
    assert len(found) == 1, text
    report: dict[str, Any] = json.loads(found[0])
    return report


# -- interpreter exit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ending", "returncode"),
    [("pass", 0), ("sys.exit(3)", 3), ("raise RuntimeError('boom')", 1)],
    ids=["falls-off-the-end", "sys.exit", "uncaught-exception"],
)
def test_interpreter_exit_drains_running_and_queued_tasks(tmp_path: Path, ending: str, returncode: int) -> None:
    result = run_child(
        tmp_path,
        f"""
        offload.configure(workers=2)
        started = threading.Semaphore(0)

        @offload.task
        def work(i):
            started.release()
            # Only returns once the interpreter is exiting: the drain must wait for it.
            say(f"task {{i}} done exit_began={{exit_began.wait(20)}}")

        def plain(label):
            say(f"{{label}} done")

        for i in range(4):
            work.delay(i)
        offload.submit(plain, "submit")
        offload.Thread(target=plain, args=("thread",)).start()
        for _ in range(2):  # both workers are busy; four tasks are queued behind them
            assert started.acquire(timeout=10)
        say("main exiting")
        {ending}
        """,
    )
    assert result.returncode == returncode, result.stderr
    out = lines(result.stdout)
    assert out[:2] == ["main exiting", "exit drain began"], result.stdout
    assert sorted(out[2:]) == sorted(
        [*(f"task {i} done exit_began=True" for i in range(4)), "submit done", "thread done"]
    ), result.stdout
    assert "dropped" not in result.stderr
    assert "left behind" not in result.stderr
    if returncode == 1:
        assert "RuntimeError: boom" in result.stderr
    else:
        assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("logging_setup", ["basicConfig", "last-resort"])
def test_drain_timeout_drops_queued_tasks_and_logs_them(tmp_path: Path, logging_setup: str) -> None:
    setup = (
        'logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")'
        if logging_setup == "basicConfig"
        else "pass  # no logging configured: Python's last-resort handler prints warnings"
    )
    began = time.monotonic()
    result = run_child(
        tmp_path,
        f"""
        import logging
        {setup}
        offload.configure(drain_timeout=0.5, workers=1)
        started = threading.Event()
        never = threading.Event()

        @offload.task
        def blocker():
            started.set()
            never.wait(30)
            say("blocker finished")

        @offload.task
        def queued_job(i):
            say("queued_job ran", i)

        b = blocker.delay()
        assert started.wait(10)
        say("blocker", b.id)
        for i in range(3):
            say("queued", queued_job.delay(i).id)
        say("main exiting")
        """,
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert elapsed < WAIT, f"the child took {elapsed:.1f}s: the drain did not stop at drain_timeout=0.5"
    out = lines(result.stdout)
    blocker_id = next(line.split()[1] for line in out if line.startswith("blocker "))
    queued_ids = [line.split()[1] for line in out if line.startswith("queued ")]
    assert len(queued_ids) == 3
    assert "queued_job ran" not in result.stdout
    assert "blocker finished" not in result.stdout

    err = lines(result.stderr)
    dropped = [line for line in err if "dropped" in line]
    assert any("dropped 3 task(s)" in line for line in dropped), result.stderr
    for task_id in queued_ids:
        assert any(task_id in line and "__main__.queued_job" in line for line in dropped), (task_id, result.stderr)
    assert not any(blocker_id in line for line in dropped), result.stderr
    left_behind = [line for line in err if "still running" in line]
    assert len(left_behind) == 1, result.stderr
    assert f"__main__.blocker (id {blocker_id})" in left_behind[0]
    if logging_setup == "basicConfig":
        for line in [*dropped, *left_behind]:
            assert line.startswith("WARNING offload.runner "), line


# -- signals ----------------------------------------------------------------------------

SIGNAL_CHILD = """
import signal
import logging

sig = getattr(signal, sys.argv[1])
mode = sys.argv[2]
draining = threading.Event()


class _OnDrain(logging.StreamHandler):
    # Prints offload's log to stderr and tells the task when the signal handler drains.
    def emit(self, record):
        super().emit(record)
        if record.getMessage().startswith("received "):
            draining.set()


logging.getLogger("offload").addHandler(_OnDrain())
if mode == "own-handler":
    signal.signal(sig, lambda signum, frame: sys.exit(0))
elif mode == "chained-python-handler":
    def previous(signum, frame):
        say("previous handler called")
        sys.exit(7)
    signal.signal(sig, previous)
    offload.install_signal_handlers([sig])
elif mode == "ignored-before":
    signal.signal(sig, signal.SIG_IGN)
    offload.install_signal_handlers([sig])
elif mode == "install":
    offload.install_signal_handlers()
else:
    assert mode == "python-default", mode

started = threading.Event()


def job():
    started.set()
    # Returns once the drain has begun, by install_signal_handlers' handler or at exit.
    ok = draining.wait(20) if mode in ("install", "chained-python-handler", "ignored-before") else exit_began.wait(20)
    say(f"task finished {ok}")


offload.submit(job)
assert started.wait(10)
say("ready")
# The handler runs in this (the main) thread, during the wait or before it.
if mode == "ignored-before":
    assert draining.wait(20)  # returns once the handler, drain included, has returned
else:
    threading.Event().wait(20)  # the handler ends the process
say("main resumed")
if mode == "ignored-before":
    say("late task", offload.submit(sum, [1, 2]).result(timeout=10))
"""


def signal_child(tmp_path: Path, sig: signal.Signals, mode: str) -> tuple[int, str, str]:
    with started_child(tmp_path, SIGNAL_CHILD, sig.name, mode) as proc:
        assert read_line(proc) == "ready\n"
        proc.send_signal(sig)
        out, err = finish(proc)
        return proc.returncode, out, err


def test_sigterm_with_the_applications_own_handler_drains_at_exit(tmp_path: Path) -> None:
    # What a server does: its SIGTERM handler ends the process with sys.exit(0);
    # offload's drain at interpreter exit lets the running task finish.
    returncode, out, err = signal_child(tmp_path, signal.SIGTERM, "own-handler")
    assert returncode == 0, err
    assert lines(out) == ["exit drain began", "task finished True"], out
    assert "Traceback" not in err, err


def test_install_signal_handlers_sigterm_drains_then_dies_by_sigterm(tmp_path: Path) -> None:
    returncode, out, err = signal_child(tmp_path, signal.SIGTERM, "install")
    # The previous handler was SIG_DFL: after the drain the signal is raised again.
    assert returncode == -signal.SIGTERM, err
    assert "task finished True" in lines(out), out
    assert "main resumed" not in out
    assert "received SIGTERM: draining offload before exit" in err
    assert "Traceback" not in err, err


def test_install_signal_handlers_sigint_drains_then_raises_keyboard_interrupt(tmp_path: Path) -> None:
    returncode, out, err = signal_child(tmp_path, signal.SIGINT, "install")
    # Python's own SIGINT handler is chained: KeyboardInterrupt in the main thread,
    # and an interpreter ended by an uncaught KeyboardInterrupt exits by SIGINT.
    assert returncode == -signal.SIGINT, err
    assert "task finished True" in lines(out), out
    assert "main resumed" not in out
    assert "received SIGINT: draining offload before exit" in err
    assert err.rstrip().endswith("KeyboardInterrupt"), err


def test_sigint_without_signal_handlers_still_drains_at_exit(tmp_path: Path) -> None:
    # Ctrl-C on a plain script: KeyboardInterrupt ends the main thread, and the
    # drain at interpreter exit still lets the running task finish.
    returncode, out, err = signal_child(tmp_path, signal.SIGINT, "python-default")
    assert returncode == -signal.SIGINT, err
    assert lines(out) == ["exit drain began", "task finished True"], out
    assert "KeyboardInterrupt" in err


def test_install_signal_handlers_chains_a_python_handler(tmp_path: Path) -> None:
    returncode, out, err = signal_child(tmp_path, signal.SIGTERM, "chained-python-handler")
    assert returncode == 7, err
    out_lines = lines(out)
    assert out_lines.index("task finished True") < out_lines.index("previous handler called"), out
    assert "main resumed" not in out


def test_install_signal_handlers_keeps_an_ignored_signal_ignored(tmp_path: Path) -> None:
    # The drain happens, then the signal stays ignored: the script goes on, and a
    # later task gets a new default runner.
    returncode, out, err = signal_child(tmp_path, signal.SIGTERM, "ignored-before")
    assert returncode == 0, err
    out_lines = lines(out)
    assert out_lines[:3] == ["task finished True", "main resumed", "late task 3"], out
    assert "Traceback" not in err, err


# -- shutdown() --------------------------------------------------------------------------


def test_shutdown_is_idempotent_and_leaves_no_offload_threads(tmp_path: Path) -> None:
    result = run_child(
        tmp_path,
        """
        import json

        def offload_threads():
            return sorted(t.name for t in threading.enumerate() if t.name.startswith("offload"))

        @offload.task
        def add(a, b):
            return a + b

        handles = [add.delay(i, i) for i in range(5)]
        handles.append(add.apply_async((1, 2), countdown=0.01))  # starts the scheduler thread
        handles.append(offload.submit(sum, [1, 2, 3]))
        report = {"results": [h.result(timeout=10) for h in handles], "while_running": offload_threads()}

        runner = offload.default_runner()
        offload.shutdown()
        report["after_first"] = offload_threads()
        offload.shutdown()
        offload.shutdown(wait=False)
        offload.shutdown(cancel_pending=True, timeout=0)
        runner.shutdown()
        report["after_repeats"] = offload_threads()
        report["closed"] = runner.closed
        report["stats"] = [runner.stats().threads, runner.stats().succeeded, runner.stats().cancelled]

        custom = offload.Runner(workers=3, name="offload-custom")
        report["custom_results"] = [custom.submit(pow, 2, i).result(timeout=10) for i in range(4)]
        custom.shutdown(wait=False)
        custom.shutdown(wait=True)  # waits for the background drain
        custom.shutdown()
        report["after_custom"] = [n for n in offload_threads() if not n.endswith("-drain")]
        for t in threading.enumerate():
            if t.name == "offload-custom-drain":  # may still be returning from its last line
                t.join(10)
        report["after_custom_drain"] = offload_threads()

        late = offload.submit(sum, [4, 5])  # a new default runner, drained at exit
        report["late"] = [late.result(timeout=10), offload.default_runner() is not runner]
        say(json.dumps(report))
        """,
    )
    assert result.returncode == 0, result.stderr
    report = json_line(result.stdout)
    assert report["results"] == [0, 2, 4, 6, 8, 3, 6]
    assert "offload-worker" in report["while_running"]
    assert "offload-scheduler" in report["while_running"]
    assert report["after_first"] == []
    assert report["after_repeats"] == []
    assert report["closed"] is True
    assert report["stats"] == [0, 7, 0]
    assert report["custom_results"] == [1, 2, 4, 8]
    assert report["after_custom"] == []
    assert report["after_custom_drain"] == []
    assert report["late"] == [9, True]
    assert "Traceback" not in result.stderr, result.stderr
    assert "dropped" not in result.stderr


def test_shutdown_from_inside_a_task_does_not_wait_for_itself(tmp_path: Path) -> None:
    # A task that shuts its runner down (wait=True) must not wait the whole
    # drain_timeout for its own attempt to finish, nor report itself left behind.
    result = run_child(
        tmp_path,
        """
        import time

        runner = offload.Runner(workers=2, drain_timeout=6, name="offload-self")

        def stop_the_runner():
            began = time.monotonic()
            runner.shutdown(wait=True)
            return time.monotonic() - began

        took = runner.submit(stop_the_runner).result(timeout=20)
        say(f"shutdown took {took:.1f}s")
        """,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"^shutdown took ([0-9.]+)s$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    took = float(match.group(1))
    assert took < 3, f"shutdown() called from a task waited {took:.1f}s for that task itself"
    assert "left behind" not in result.stderr, result.stderr


# -- fork() ------------------------------------------------------------------------------


def test_fork_child_gets_a_fresh_default_runner_and_the_parent_is_unaffected(tmp_path: Path) -> None:
    result = run_child(
        tmp_path,
        """
        import json
        import os

        offload.configure(workers=1)
        release = threading.Event()
        started = threading.Event()

        def parent_job():
            started.set()
            assert release.wait(20)
            return "parent job done"

        @offload.task
        def whoami(tag):
            return [tag, os.getpid()]

        running = offload.submit(parent_job)
        assert started.wait(10)
        queued = whoami.delay("queued in the parent before fork")  # waits behind parent_job
        parent_ids = [running.id, queued.id]

        read_end, write_end = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_end)
            report = {"threads_at_fork": sorted(t.name for t in threading.enumerate())}
            try:
                plain = offload.submit(os.getpid)
                declared = whoami.delay("child")
                report["plain"] = plain.result(timeout=10) == os.getpid()
                report["declared"] = declared.result(timeout=10) == ["child", os.getpid()]
                report["ids"] = [plain.id, declared.id]
                report["sees_parent_tasks"] = [offload.get(i) is not None for i in parent_ids]
                report["submitted"] = offload.stats().submitted
            except BaseException as exc:
                report["error"] = repr(exc)
            with os.fdopen(write_end, "w") as pipe:
                json.dump(report, pipe)
            sys.exit(0)  # a normal exit, with offload's drain in the child

        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child = json.load(pipe)
        _, status = os.waitpid(pid, 0)
        after = whoami.delay("parent after fork")
        release.set()
        report = {
            "child": child,
            "child_exit": os.waitstatus_to_exitcode(status),
            "parent_ids": parent_ids,
            "running": running.result(timeout=10),
            "queued": queued.result(timeout=10) == ["queued in the parent before fork", os.getpid()],
            "after": [after.result(timeout=10) == ["parent after fork", os.getpid()], after.id],
            "submitted": offload.stats().submitted,
        }
        say(json.dumps(report))
        """,
    )
    assert result.returncode == 0, result.stderr
    report = json_line(result.stdout)
    child = report["child"]
    assert "error" not in child, child["error"]
    assert report["child_exit"] == 0
    assert [n for n in child["threads_at_fork"] if n.startswith("offload")] == []
    assert child["plain"] is True
    assert child["declared"] is True
    assert child["sees_parent_tasks"] == [False, False]
    assert child["submitted"] == 2

    parent_ids = [*report["parent_ids"], report["after"][1]]
    assert not set(child["ids"]) & set(parent_ids), (child["ids"], parent_ids)
    assert {i[:16] for i in child["ids"]}.isdisjoint({i[:16] for i in parent_ids}), "ids must use a new prefix"

    assert report["running"] == "parent job done"
    assert report["queued"] is True
    assert report["after"][0] is True
    assert report["submitted"] == 3


def test_fork_while_another_thread_holds_offloads_locks(tmp_path: Path) -> None:
    """Locks held by a thread that does not exist in the child are replaced, not inherited locked."""
    result = run_child(
        tmp_path,
        """
        import json
        import os

        from offload import _default, _hooks, _payload, _task

        locks = [_default._lock, _hooks._global_lock, _payload._verdicts_lock, _task._registry_lock]
        held = threading.Event()
        release = threading.Event()

        def hold_every_lock():
            for lock in locks:
                lock.acquire()
            held.set()
            assert release.wait(20)
            for lock in reversed(locks):
                lock.release()

        holder = threading.Thread(target=hold_every_lock)
        holder.start()
        assert held.wait(10)
        sys.stdout.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the holder thread does not exist here
            os.close(read_end)
            try:
                offload.on("after_success")(lambda handle: None)  # hooks' global lock
                offload.configure(workers=2)  # the default runner's lock

                @offload.task(name="child.job")  # the registry's lock
                def job(value):
                    return type(value).__name__

                class Point:  # a type never seen: its payload verdict is computed under a lock
                    pass

                report = {"result": job.delay(Point()).result(timeout=10)}
            except BaseException as exc:
                report = {"error": repr(exc)}
            with os.fdopen(write_end, "w") as pipe:
                json.dump(report, pipe)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child = json.load(pipe)
        os.waitpid(pid, 0)
        release.set()
        holder.join(10)
        say(json.dumps(child))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert json_line(result.stdout) == {"result": "Point"}
