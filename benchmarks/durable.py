"""Journal-mode workloads of the benchmark suite (J1-J3), run by benchmarks/run.py.

Contenders, measured in the same run:

- ``offload memory``: ``offload.Runner(workers=8)`` (at-most-once, nothing on disk),
- ``offload journal``: ``offload.Runner(workers=8, journal=PATH)`` (SQLite, synchronous=NORMAL: writes
  durable in the intake log, applied to the file by its writer thread),
- ``SqliteHuey``: Huey's SQLite storage (WAL) with an in-process consumer of 8 thread workers.

Each workload returns table rows as dicts; run.py prints them in the journal table.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import offload

perf_counter = time.perf_counter
MEMORY, JOURNAL, HUEY = "offload memory", "offload journal", "SqliteHuey"
COLUMNS = (MEMORY, JOURNAL, HUEY)

_done = threading.Event()
_count = 0
_target = 0
_lock = threading.Lock()
_paused = threading.Event()  # set in the J3 child: tasks block, so they are all waiting or running
_first_run: list[float] = []


def _tick() -> None:
    global _count
    with _lock:
        _count += 1
        if _count == _target:
            _done.set()


@offload.task(name="bench.noop")
def durable_noop() -> None:
    if _paused.is_set():
        threading.Event().wait(3600)
    if not _first_run:
        _first_run.append(perf_counter())
    _tick()


def _expect(n: int) -> None:
    global _count, _target
    _count, _target = 0, n
    _done.clear()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.999999) - 1))]


@contextmanager
def _tmpdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="offload-bench-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- contenders: open(dir, workers) -> (submit, close) ------------------------------------


def _offload(directory: str | None, workers: int) -> tuple[Callable[[], Any], Callable[[], None]]:
    journal = None if directory is None else os.path.join(directory, "offload.sqlite3")
    runner = offload.Runner(workers=workers, journal=journal, queue_size=1_000_000)
    task = durable_noop

    def submit() -> Any:
        return runner.submit(task)

    return submit, lambda: runner.shutdown(wait=True)


def _huey(directory: str, workers: int) -> tuple[Callable[[], Any], Callable[[], None]]:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=os.path.join(directory, "huey.sqlite3"), results=False)
    huey_task = huey.task()(_tick)
    consumer = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=False, initial_delay=0.001, max_delay=0.01,
        check_worker_health=False,
    )  # fmt: skip
    consumer.start()

    def close() -> None:
        consumer.stop(graceful=True)

    return huey_task, close


def _open(label: str, directory: str, workers: int) -> tuple[Callable[[], Any], Callable[[], None]]:
    if label == MEMORY:
        return _offload(None, workers)
    if label == JOURNAL:
        return _offload(directory, workers)
    return _huey(directory, workers)


# -- J1: durable no-op throughput ----------------------------------------------------------


def j1_throughput(quick: bool) -> list[dict[str, Any]]:
    n, workers, reps = (3_000, 8, 2) if quick else (10_000, 8, 3)
    log(f"J1: {n:,} no-op tasks end to end (enqueue + run), {workers} workers, best of {reps}")
    best: dict[str, float] = {}
    for rep in range(reps):
        for label in COLUMNS:
            with _tmpdir() as directory:
                submit, close = _open(label, directory, workers)
                _expect(n)
                t0 = perf_counter()
                for _ in range(n):
                    submit()
                finished = _done.wait(120.0)
                elapsed = perf_counter() - t0
                close()
            rate = n / elapsed if finished else 0.0
            best[label] = max(best.get(label, 0.0), rate)
            log(f"  rep {rep + 1} {label:<16} {rate:10,.0f} tasks/s")
    versus = best[JOURNAL] / best[HUEY] if best[HUEY] else float("inf")
    title = f"J1 durable no-op throughput ({n:,} tasks, {workers} workers, best of {reps})"
    values = {label: f"{value:,.0f}" for label, value in best.items()}
    return [
        dict(workload=title, metric="tasks/s end to end", values=values, ratio=f"{versus:.1f}x",
             target="journal >= 10,000/s", result=best[JOURNAL] >= 10_000, note="one enqueuing thread"),
        dict(workload=title, metric="journal / SqliteHuey", values={}, ratio=f"{versus:.1f}x",
             target="journal >= 5x SqliteHuey", result=versus >= 5.0, note="Huey: 8 thread workers, results off"),
    ]  # fmt: skip


# -- J2: enqueue cost from 8 request threads ----------------------------------------------


def _j2_run(label: str, threads: int, per_thread: int, workers: int, rate: float | None) -> list[float]:
    """Per-call latencies (us) of ``threads`` threads enqueueing, paced at ``rate``/s each or flat out."""
    with _tmpdir() as directory:
        submit, close = _open(label, directory, workers)
        _expect(threads * per_thread)
        samples: list[list[float]] = [[] for _ in range(threads)]
        start = threading.Barrier(threads)

        def produce(index: int) -> None:
            mine = samples[index]
            start.wait()
            t0 = perf_counter() + index / (threads * rate) if rate else 0.0  # staggered, like requests
            for i in range(per_thread):
                if rate:
                    delay = t0 + i / rate - perf_counter()  # absolute schedule: no drift
                    if delay > 0:
                        time.sleep(delay)
                began = perf_counter()
                submit()
                mine.append(perf_counter() - began)

        producers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        _done.wait(120.0)
        close()
    return [s * 1e6 for chunk in samples for s in chunk]


def j2_enqueue(quick: bool) -> list[dict[str, Any]]:
    threads, workers, rate = 8, 8, 250.0
    per_thread = 250 if quick else 1_000
    log(f"J2: {threads} request threads x {per_thread:,} enqueues at {rate:g}/s each, {workers} workers running them")
    paced = {label: _j2_run(label, threads, per_thread, workers, rate) for label in COLUMNS}
    log(f"J2b: the same {threads} threads enqueueing flat out (closed loop)")
    flat = {label: _j2_run(label, threads, per_thread, workers, None) for label in COLUMNS}
    rows = []
    for name, results, targets in (
        (f"J2 enqueue cost ({threads} threads x {per_thread:,} at {rate:g}/s each, {workers} workers running)",
         paced, True),
        (f"J2b enqueue cost, {threads} threads flat out (saturated: p50 ~ {threads} / throughput)", flat, False),
    ):  # fmt: skip
        p50 = {k: statistics.median(v) for k, v in results.items()}
        p99 = {k: _pct(v, 0.99) for k, v in results.items()}
        for label in COLUMNS:
            log(f"  {name[:3]} {label:<16} p50 {p50[label]:9.1f} us  p99 {p99[label]:9.1f} us")
        rows.append(dict(workload=name, metric="p50 us per enqueue", values={k: f"{v:.1f}" for k, v in p50.items()},
                         ratio=f"{p50[JOURNAL] / p50[HUEY]:.2f}x", target="journal p50 < 100 us" if targets else "",
                         result=p50[JOURNAL] < 100.0, note=""))  # fmt: skip
        rows.append(dict(workload=name, metric="p99 us per enqueue", values={k: f"{v:.1f}" for k, v in p99.items()},
                         ratio=f"{p99[JOURNAL] / p99[HUEY]:.2f}x", target="journal p99 < 2,000 us" if targets else "",
                         result=p99[JOURNAL] < 2000.0, note="an enqueue waits for no commit (intake log)"))  # fmt: skip
    return rows


# -- J3: recovery time -------------------------------------------------------------------


def recovery_child(path: str, n: int) -> None:
    """Child of J3: enqueue n durable tasks whose attempts block, say so, wait for SIGKILL."""
    _paused.set()
    runner = offload.Runner(workers=8, journal=path, queue_size=1_000_000)
    for _ in range(n):
        runner.submit(durable_noop)
    print("ready", flush=True)
    threading.Event().wait(3600)


def j3_recovery(quick: bool) -> list[dict[str, Any]]:
    n = 10_000
    log(f"J3: restart after SIGKILL with {n:,} rows in the journal: time to the first recovered task")
    with _tmpdir() as directory:
        path = os.path.join(directory, "offload.sqlite3")
        child = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py"),
             "--recovery-child", path, str(n)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
        child.communicate()
        if line != "ready":
            return [dict(workload="J3", metric="child failed", values={}, result=False, note=line)]
        _first_run.clear()
        _expect(n)
        t0 = perf_counter()
        runner = offload.Runner(workers=8, journal=path, queue_size=1_000_000)
        finished = _done.wait(120.0)
        total = perf_counter() - t0
        runner.shutdown(wait=True)
    first = (_first_run[0] - t0) if _first_run else float("inf")
    log(f"  first recovered task after {first * 1e3:.1f} ms; all {n:,} done after {total:.2f} s ({finished=})")
    title = f"J3 recovery ({n:,} rows of a SIGKILLed process, 8 workers)"
    row = dict(
        workload=title,
        metric="ms from restart to the first recovered task",
        values={JOURNAL: f"{first * 1e3:.1f}"},
        target="< 1,000 ms",
        result=first < 1.0,
        note=f"all {n:,} finished {total:.2f} s after restart",
    )
    return [row]
