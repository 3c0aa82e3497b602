"""Four real processes, each running the beat (as gunicorn workers would), fire
each periodic tick once per host: the tick claims in the shared state directory
decide which one enqueues it.

Every child drives its own fake clock; the parent moves all four clocks by the
same step, concurrently, and waits for each child to report that its beat has
handled the step and its runner is idle. No sleeps; every wait has a timeout.
"""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(sys.platform == "win32", reason="fcntl file locks"),
]

CHILD_TIMEOUT = 30.0
START = 1_767_225_600
PROCESSES = 4
STEPS = 6

CHILD = textwrap.dedent(
    f"""\
    import os
    import sys

    import offload
    from offload import _periodic
    from offload.testing import FakeClock

    state_dir, out_path = sys.argv[1], sys.argv[2]
    clock = FakeClock(wall={START})


    @offload.periodic(every=60, name="tests.periodic.host")
    def tick():
        line = f"{{os.getpid()}} {{clock.time():.0f}}\\n".encode()
        fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one O_APPEND write: lines from several processes never mix
        finally:
            os.close(fd)


    runner = offload.Runner(workers=2, clock=clock, name="child")
    runner.start(state_dir=state_dir)
    print("ready", flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        clock.advance(seconds)
        assert _periodic.current_beat().wait_settled(clock.time(), 10.0)
        assert runner.join(10.0)
        print("ok", flush=True)
    runner.shutdown()
    """
)


def test_four_processes_fire_each_tick_once(tmp_path: Path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state_dir = tmp_path / "state"
    out = tmp_path / "fired.txt"
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(state_dir), str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert _read_line(child) == "ready"
        for _ in range(STEPS):
            for child in children:  # all four advance at once: they race for the claim
                assert child.stdin is not None
                child.stdin.write("advance 60\n")
                child.stdin.flush()
            for child in children:
                assert _read_line(child) == "ok"
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            assert child.wait(CHILD_TIMEOUT) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(CHILD_TIMEOUT)
            for pipe in (child.stdin, child.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()
    fields = out.read_text().split()
    pids, ticks = fields[0::2], Counter(int(tick) for tick in fields[1::2])
    assert ticks == {START + 60 * n: 1 for n in range(1, STEPS + 1)}  # every tick, each once
    assert set(pids) <= {str(child.pid) for child in children}


def _read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], CHILD_TIMEOUT)
    assert ready, "child did not answer in time"
    return child.stdout.readline().strip()
