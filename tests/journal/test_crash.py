"""Crash tests: real child processes, real SIGKILL, then a restart on the same journal."""

from __future__ import annotations

import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from offload.journal import SQLiteJournal

CHILD = str(Path(__file__).with_name("_child.py"))
WAIT = 60.0  # real processes doing thousands of tasks: generous, never reached when right

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]


class Child:
    def __init__(self, journal: Path, runs: Path, *args: str, say_at: int = 0) -> None:
        env = dict(os.environ, OFFLOAD_TEST_RUNS=str(runs), OFFLOAD_TEST_SAY_AT=str(say_at))
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, str(journal), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,  # unbuffered: readline() never reads past the line select() announced
        )
        assert self.proc.stdout is not None
        self._out = self.proc.stdout

    def read_line(self, timeout: float = WAIT) -> str:
        ready, _, _ = select.select([self._out], [], [], timeout)
        assert ready, "child said nothing in time"
        return self._out.readline().decode().strip()

    def wait_for(self, word: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line == word:
                return
            assert line, f"child exited before saying {word!r}: {self.stderr()}"

    def kill(self) -> str:
        """SIGKILL the child; return what it printed and was not read yet."""
        self.proc.send_signal(signal.SIGKILL)
        out, _ = self.proc.communicate(timeout=WAIT)
        assert self.proc.returncode == -signal.SIGKILL
        return out.decode()

    def exited(self) -> int:
        self.proc.communicate(timeout=WAIT)
        return self.proc.returncode

    def finish(self) -> str:
        _, err = self.proc.communicate(timeout=WAIT)
        assert self.proc.returncode == 0, err.decode()
        return err.decode()

    def stderr(self) -> str:
        self.proc.kill()
        return self.proc.communicate(timeout=WAIT)[1].decode()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "journal.sqlite3", tmp_path / "runs.txt"


def runs_of(runs: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in runs.read_text().splitlines())


def journal_state(path: Path) -> tuple[dict[str, int], list[str]]:
    journal = SQLiteJournal(path)
    try:
        return journal.counts(), journal.check()
    finally:
        journal.close()


@pytest.mark.parametrize("seed", range(10))
def test_sigkill_mid_run_loses_nothing_and_duplicates_only_running_tasks(files: tuple[Path, Path], seed: int) -> None:
    journal, runs = files
    n, workers = 10_000, 8
    kill_at = random.Random(seed).randint(2_000, 4_000)
    child = Child(journal, runs, "enqueue-run", "-n", str(n), "--workers", str(workers), say_at=kill_at)
    child.wait_for("reached")
    child.kill()
    before = runs_of(runs)
    counts, _ = journal_state(journal)
    assert counts["running"] <= workers
    Child(journal, runs, "run", "--total", str(n), "--workers", str(workers)).finish()
    counts, check = journal_state(journal)
    assert check == ["ok"]
    assert counts["succeeded"] == n, counts
    after = runs_of(runs)
    assert set(after) == {str(i) for i in range(n)}  # 0 lost
    duplicated = [task for task, times in after.items() if times > 1]
    assert len(duplicated) <= workers, duplicated
    assert all(after[task] == 2 and before[task] == 1 for task in duplicated)  # run at the kill, then once more


def test_sigkill_before_anything_ran_runs_each_task_exactly_once(files: tuple[Path, Path]) -> None:
    journal, runs = files
    child = Child(journal, runs, "enqueue-later", "-n", "1000")  # every task waits 1 s: none has started
    child.wait_for("enqueued")
    child.kill()
    assert not runs.exists() or runs.read_text() == ""
    Child(journal, runs, "run", "--total", "1000").finish()
    after = runs_of(runs)
    assert set(after.values()) == {1}
    assert len(after) == 1000
    counts, check = journal_state(journal)
    assert check == ["ok"]
    assert counts["succeeded"] == 1000


@pytest.mark.parametrize("seed", range(3))
def test_every_enqueue_that_returned_is_on_disk(files: tuple[Path, Path], seed: int) -> None:
    journal, runs = files
    child = Child(journal, runs, "enqueue-loop", "--workers", "2")
    returned = []
    wanted = random.Random(seed).randint(200, 2_000)
    while len(returned) < wanted:
        returned.append(child.read_line())
    # Printed before the kill: complete lines only (the kill may cut the last one short).
    returned += [line for line in child.kill().split("\n")[:-1] if line]
    reader = SQLiteJournal(journal)
    try:
        assert reader.check() == ["ok"]
        missing = [task_id for task_id in returned if reader.fetch(task_id) is None]
        assert missing == []
        rows = reader.list_tasks(limit_all())
        assert all(row.payload.startswith("[[") and row.name == "crash.record" for row in rows)  # no half rows
    finally:
        reader.close()


def limit_all() -> object:
    from offload.journal import Filter

    return Filter(limit=1_000_000)


def test_four_processes_share_one_journal(files: tuple[Path, Path]) -> None:
    journal, runs = files
    per_thread, threads, processes = 625, 8, 4  # 4 x 8 x 625 = 20,000
    total = per_thread * threads * processes
    SQLiteJournal(journal).close()  # create it before four processes race to
    children = [
        Child(
            journal,
            runs,
            "threads",
            "-n",
            str(per_thread),
            "--threads",
            str(threads),
            "--start",
            str(p * per_thread * threads),
            "--total",
            str(total),
        )
        for p in range(processes)
    ]
    errors = [child.finish() for child in children]
    assert not [e for e in errors if "locked" in e or "Error" in e], errors
    after = runs_of(runs)
    assert len(after) == total  # 0 lost
    assert set(after.values()) == {1}  # 0 duplicates
    counts, check = journal_state(journal)
    assert check == ["ok"]
    assert counts["succeeded"] == total


def test_dead_owner_work_is_recovered_by_a_live_process_within_5_seconds(files: tuple[Path, Path]) -> None:
    journal, runs = files
    survivor = Child(journal, runs, "run", "--total", "1", "--workers", "2")
    victim = Child(journal, runs, "one", "--task", "crash.hang_once")  # never mind at_most_once: see below
    victim.wait_for("hanging")
    victim.kill()
    killed = time.monotonic()
    survivor.finish()
    took = time.monotonic() - killed
    counts, check = journal_state(journal)
    assert check == ["ok"]
    assert counts["interrupted"] == 1  # the survivor recovered it (at_most_once: not re-run)
    assert runs_of(runs)["hang_once"] == 1
    assert took < 5.0, f"recovered after {took:.1f}s"


def _gil_hold_n(seconds: float) -> int:
    """The n for which crash.hold_gil holds the GIL about ``seconds`` on this machine (each +1 doubles it)."""
    began = time.perf_counter()
    re.match(r"(a+)+$", "a" * 20 + "b")
    took = max(time.perf_counter() - began, 1e-6)
    return 20 + max(0, math.ceil(math.log2(seconds / took)))


def test_a_live_owner_holding_the_gil_is_not_robbed(files: tuple[Path, Path]) -> None:
    journal, runs = files
    holder = Child(journal, runs, "one", "--task", "crash.hold_gil", "-n", str(_gil_hold_n(6.0)), "--total", "1")
    holder.wait_for("holding")
    held_from = time.monotonic()
    watcher = Child(journal, runs, "run", "--total", "1", "--workers", "2")
    holder.finish()
    held = time.monotonic() - held_from
    assert held > 3.0 + 1.0, f"the GIL was held {held:.1f}s, not past the lease; make the regex longer"
    watcher.finish()
    assert runs_of(runs)["hold_gil"] == 1
    counts, check = journal_state(journal)
    assert check == ["ok"]
    assert counts["succeeded"] == 1


def test_a_poison_task_fails_worker_lost_after_three_interrupted_attempts(files: tuple[Path, Path]) -> None:
    journal, runs = files
    first = Child(journal, runs, "one", "--task", "crash.poison")
    assert first.exited() == -signal.SIGKILL
    for _ in range(2):  # each restart recovers it and runs it again: it kills that process too
        assert Child(journal, runs, "run", "--total", "1").exited() == -signal.SIGKILL
    Child(journal, runs, "run", "--total", "1").finish()  # third interruption: failed, nothing to run
    assert runs_of(runs)["poison"] == 3
    reader = SQLiteJournal(journal)
    try:
        (row,) = reader.list_tasks()
        assert (row.state, row.reason, row.attempts, row.interrupted) == ("failed", "worker_lost", 3, 3)
        assert reader.check() == ["ok"]
    finally:
        reader.close()


def test_at_most_once_task_is_interrupted_not_rerun_after_restart(files: tuple[Path, Path]) -> None:
    journal, runs = files
    child = Child(journal, runs, "one", "--task", "crash.hang_once")
    child.wait_for("hanging")
    child.kill()
    Child(journal, runs, "run", "--total", "1").finish()
    assert runs_of(runs)["hang_once"] == 1
    reader = SQLiteJournal(journal)
    try:
        (row,) = reader.list_tasks()
        assert (row.state, row.reason, row.attempts) == ("interrupted", "process_died", 1)
        assert reader.check() == ["ok"]
    finally:
        reader.close()
