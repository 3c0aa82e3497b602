"""offload benchmark suite: one command, one Markdown table.

    python benchmarks/run.py            # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # smoke run, scaled-down workloads
    python benchmarks/run.py --only W1,W3,MEM
    python benchmarks/run.py --only RATE,SCHED   # flow control (benchmarks/flow.py)
    python benchmarks/run.py --only J1,J2,J3    # journal mode

Every workload runs in this one process against three contenders, one after
the other and interleaved repetition by repetition:

- ``threading.Thread`` per task (unbounded: one new thread per task),
- ``concurrent.futures.ThreadPoolExecutor(max_workers=N)``,
- ``offload.Runner(workers=N)``.

MEM is offload only and runs in a fresh child interpreter; RATE and SCHED
(flow control, in flow.py) are offload only, against their ideal or an empty heap. J1-J3
(benchmarks/durable.py) compare journal mode with in-memory mode and Huey's ``SqliteHuey``
(the ``huey`` package, in the dev extra) and print a second table. The exit status is 0
even when a target is missed: this is a report; missed targets say ``MISSED``.
See benchmarks/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

try:
    import offload
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    import offload

import durable  # the journal workloads, next to this file

perf_counter = time.perf_counter


def noop() -> None:
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- contenders: the same three-call protocol for each ------------------------------
#
# ``open(workers, capacity)`` returns a pool whose ``submit`` attribute is the raw
# submit callable (the bound method itself for TPE and offload, so the hot loops
# pay no adapter cost); ``wait_all()`` returns once every submitted task is done,
# using the contender's own wait-for-everything primitive; ``close()`` releases it.


class ThreadPerTask:
    """One ``threading.Thread`` per task, started at once (no bound, no queue)."""

    label = "Thread-per-task"

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    @classmethod
    def open(cls, workers: int, capacity: int) -> ThreadPerTask:
        return cls()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args)
        thread.start()
        self._threads.append(thread)

    def wait_all(self) -> None:
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def close(self) -> None:
        self.wait_all()


class Executor:
    """``concurrent.futures.ThreadPoolExecutor``; waits with ``shutdown(wait=True)``."""

    label = "ThreadPoolExecutor"

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers)
        self.submit = self._executor.submit

    @classmethod
    def open(cls, workers: int, capacity: int) -> Executor:
        return cls(workers)

    def wait_all(self) -> None:
        # The executor's only wait-for-everything primitive that does not register a
        # waiter on every future (concurrent.futures.wait does, which slows the pool).
        self._executor.shutdown(wait=True)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class Offload:
    """``offload.Runner``; waits with ``join()``."""

    label = "offload Runner"

    def __init__(self, workers: int, capacity: int) -> None:
        # queue_size is raised only so that a burst of `capacity` submits cannot hit
        # QueueFullError (TPE's queue is unbounded); it changes nothing on the hot path.
        self._runner = offload.Runner(workers=workers, queue_size=max(capacity, 10_000))
        self.submit = self._runner.submit

    @classmethod
    def open(cls, workers: int, capacity: int) -> Offload:
        return cls(workers, capacity)

    def wait_all(self) -> None:
        self._runner.join()

    def close(self) -> None:
        self._runner.shutdown(wait=True)


CONTENDERS: tuple[type[ThreadPerTask] | type[Executor] | type[Offload], ...] = (ThreadPerTask, Executor, Offload)
THREADS, TPE, OFFLOAD = (c.label for c in CONTENDERS)


def settle() -> None:
    """Between measurements: collect garbage and let exited threads go away."""
    gc.collect()
    time.sleep(0.05)


# -- results ---------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    metric: str
    values: dict[str, str]
    ratio: str = ""
    target: str = ""
    result: str = ""
    note: str = ""
    table: str = "pool"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def markdown(self) -> str:
        tables = []
        pool = [r for r in self.rows if r.table == "pool"]
        if pool:
            tables.append(self._table(pool, (THREADS, TPE, OFFLOAD), "offload / TPE"))
        journal = [r for r in self.rows if r.table == "journal"]
        if journal:
            tables.append(self._table(journal, durable.COLUMNS, "journal / Huey"))
        flow = [r for r in self.rows if r.table == "flow"]
        if flow:
            tables.append(self._table(flow, (OFFLOAD,), "vs baseline"))
        return "\n\n".join(tables)

    @staticmethod
    def _table(rows: list[Row], columns: Sequence[str], ratio: str) -> str:
        head = ["Workload", "Metric", *columns, ratio, "Target", "Result", "Note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in rows:
            cells = [r.workload, r.metric, *(r.values.get(c, "—") for c in columns)]
            cells += [r.ratio or "—", r.target or "—", r.result or "—", r.note]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISSED**"


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))
    return sorted_values[index]


# -- W1: no-op throughput -------------------------------------------------------


def burst(contender: type[ThreadPerTask] | type[Executor] | type[Offload], n: int, workers: int) -> tuple[float, float]:
    """Submit ``n`` no-ops at once, then wait for all: (seconds submitting, seconds in all)."""
    settle()
    pool = contender.open(workers, n)
    submit = pool.submit
    t0 = perf_counter()
    for _ in range(n):
        submit(noop)
    submitted = perf_counter()
    pool.wait_all()
    finished = perf_counter()
    pool.close()
    return submitted - t0, finished - t0


def w1_throughput(report: Report, quick: bool) -> None:
    n, workers, reps = (5_000, 8, 2) if quick else (20_000, 8, 3)
    log(f"W1: {n:,} no-op tasks, {workers} workers, best of {reps}")
    best: dict[str, float] = {}
    for rep in range(reps):
        for contender in CONTENDERS:
            rate = n / burst(contender, n, workers)[1]
            best[contender.label] = max(best.get(contender.label, 0.0), rate)
            log(f"  rep {rep + 1} {contender.label:<20} {rate:12,.0f} tasks/s")
    ratio = best[OFFLOAD] / best[TPE]
    report.add(
        Row(
            f"W1 no-op throughput ({n:,} tasks, {workers} workers, best of {reps})",
            "tasks/s (higher is better)",
            {label: f"{value:,.0f}" for label, value in best.items()},
            ratio=f"{ratio:.2f}x",
            target="offload >= 0.90x TPE",
            result=verdict(ratio >= 0.9),
            note="Thread-per-task: unbounded, one thread per task",
        )
    )


# -- W2: enqueue cost -------------------------------------------------------------


def w2_enqueue(report: Report, quick: bool) -> None:
    n, workers, reps = (5_000, 8, 3) if quick else (20_000, 8, 3)
    log(f"W2: {n:,} submits of a no-op, {workers} workers, median of {reps} (submit loop only)")
    samples: dict[str, list[float]] = {c.label: [] for c in CONTENDERS}
    for rep in range(reps):
        for contender in CONTENDERS:
            us = burst(contender, n, workers)[0] / n * 1e6
            samples[contender.label].append(us)
            log(f"  rep {rep + 1} {contender.label:<20} {us:8.2f} us/submit")
    median = {label: statistics.median(values) for label, values in samples.items()}
    ratio = median[OFFLOAD] / median[TPE]
    report.add(
        Row(
            f"W2 enqueue cost ({n:,} submits, {workers} workers, median of {reps})",
            "us per submit (lower is better)",
            {label: f"{value:.2f}" for label, value in median.items()},
            ratio=f"{ratio:.2f}x",
            target="offload <= 1.20x TPE.submit",
            result=verdict(ratio <= 1.2),
            note="Thread-per-task: Thread(...).start()",
        )
    )


# -- W3: enqueue-to-start latency at a steady rate ------------------------------------


def w3_latency(report: Report, quick: bool) -> None:
    rate, seconds, workers = 500, (1.0 if quick else 4.0), 8
    n = int(rate * seconds)
    warmup = rate // 10  # 0.1 s at the same pace, not recorded: measure steady state
    interval = 1.0 / rate
    log(f"W3: {n:,} tasks at {rate}/s for {seconds:g} s, {workers} workers (+{warmup} warm-up tasks)")
    results: dict[str, tuple[float, float, float]] = {}
    for contender in CONTENDERS:
        settle()
        total = warmup + n
        submitted = [0.0] * total
        started = [0.0] * total

        def record(i: int, started: list[float] = started) -> None:
            started[i] = perf_counter()

        pool = contender.open(workers, total)
        submit = pool.submit
        sleep = time.sleep
        t0 = perf_counter()
        for i in range(total):
            slot = t0 + i * interval  # absolute schedule: no drift from slow iterations
            delay = slot - perf_counter()
            if delay > 0:
                sleep(delay)
            submitted[i] = perf_counter()
            submit(record, i)
        pool.wait_all()
        pool.close()
        latencies = sorted((started[i] - submitted[i]) * 1e3 for i in range(warmup, total))
        results[contender.label] = (percentile(latencies, 0.50), percentile(latencies, 0.99), latencies[-1])
        p50, p99, worst = results[contender.label]
        log(f"  {contender.label:<20} p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.3f} ms")
    title = f"W3 enqueue-to-start latency ({n:,} tasks at {rate}/s for {seconds:g} s, {workers} workers)"
    for index, metric in enumerate(("p50", "p99", "max")):
        ours, theirs = results[OFFLOAD][index], results[TPE][index]
        row = Row(
            title,
            f"{metric} ms (lower is better)",
            {label: f"{values[index]:.3f}" for label, values in results.items()},
            ratio=f"{ours / theirs:.2f}x" if theirs > 0 else "",
        )
        if metric == "p99":
            row.target = "offload p99 < 1 ms"
            row.result = verdict(ours < 1.0)
        report.add(row)


# -- W4: bounded pool of sleeping tasks ---------------------------------------------------


def w4_sleepers(report: Report, quick: bool) -> None:
    n, workers, nap = (400 if quick else 2_000), 16, 0.010
    ideal = n * nap / workers
    limit = ideal * 1.10
    log(f"W4: {n:,} tasks sleeping {nap * 1e3:g} ms, {workers} workers (ideal {ideal:.3f} s)")
    walls: dict[str, float] = {}
    for contender in CONTENDERS:
        settle()
        pool = contender.open(workers, n)
        submit = pool.submit
        sleep = time.sleep
        t0 = perf_counter()
        for _ in range(n):
            submit(sleep, nap)
        pool.wait_all()
        walls[contender.label] = perf_counter() - t0
        pool.close()
        log(f"  {contender.label:<20} {walls[contender.label]:.3f} s")
    ratio = walls[OFFLOAD] / walls[TPE]
    report.add(
        Row(
            f"W4 {n:,} x {nap * 1e3:g} ms sleeps, {workers} workers (ideal {ideal:.3f} s)",
            "wall s (lower is better)",
            {label: f"{value:.3f}" for label, value in walls.items()},
            ratio=f"{ratio:.2f}x",
            target=f"offload <= {limit:.3f} s (ideal + 10%)",
            result=verdict(walls[OFFLOAD] <= limit),
            note=f"Thread-per-task is unbounded: {n:,} threads at once; bounding that is the point",
        )
    )


# -- MEM: RSS growth over many tasks (offload only, fresh interpreter) ----------------------


def read_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(small: int, large: int) -> None:
    """Runs in the child interpreter: print RSS after `small` and after `large` tasks as JSON."""
    batch = 10_000  # join after each batch: the default queue_size (10,000) is never exceeded
    runner = offload.Runner()  # defaults: history=10,000, queue_size=10,000
    submit = runner.submit
    rss_small = 0.0
    done = 0
    t0 = perf_counter()
    while done < large:
        for _ in range(batch):
            submit(noop)
        runner.join()
        done += batch
        if done == small:
            gc.collect()
            rss_small = read_rss_mb()
    gc.collect()
    rss_large = read_rss_mb()
    elapsed = perf_counter() - t0
    stats = runner.stats()
    runner.shutdown()
    out = {
        "small": small,
        "large": large,
        "rss_small": rss_small,
        "rss_large": rss_large,
        "seconds": elapsed,
        "workers": stats.workers,
        "succeeded": stats.succeeded,
        "history": runner.settings.history,
    }
    print(json.dumps(out))


def mem_growth(report: Report, quick: bool) -> None:
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    scaled = " (--quick: scaled down from 100,000 vs 1,000,000)" if quick else ""
    log(f"MEM: RSS after {small:,} vs {large:,} no-op tasks, fresh interpreter{scaled}")
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", str(small), str(large)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        log(child.stderr)
        report.add(Row("MEM", "child failed", {}, result="**MISSED**", note=f"exit status {child.returncode}"))
        return
    data = json.loads(child.stdout.strip().splitlines()[-1])
    delta = data["rss_large"] - data["rss_small"]
    log(f"  RSS {data['rss_small']:.1f} -> {data['rss_large']:.1f} MiB ({delta:+.1f}) in {data['seconds']:.1f} s")
    title = f"MEM offload RSS, default history={data['history']:,}, {data['workers']} workers{scaled}"
    report.add(Row(title, f"VmRSS MiB after {small:,} tasks", {OFFLOAD: f"{data['rss_small']:.1f}"}))
    report.add(Row(title, f"VmRSS MiB after {large:,} tasks", {OFFLOAD: f"{data['rss_large']:.1f}"}))
    report.add(
        Row(
            title,
            f"growth MiB ({small:,} -> {large:,})",
            {OFFLOAD: f"{delta:+.1f}"},
            target="<= 10 MiB",
            result=verdict(delta <= 10.0),
            note=f"{data['succeeded']:,} tasks succeeded, {large / data['seconds']:,.0f} tasks/s incl. joins",
        )
    )


# -- main --------------------------------------------------------------------------------------


def journal_workload(fn: Callable[[bool], list[dict[str, Any]]]) -> Callable[[Report, bool], None]:
    def run(report: Report, quick: bool) -> None:
        for row in fn(quick):
            row["result"] = verdict(row["result"]) if row.get("target") else ""
            report.add(Row(**row, table="journal"))

    return run


def flow_workload(name: str) -> Callable[[Report, bool], None]:
    """A workload of flow.py (offload only), its rows added to the report."""

    def run(report: Report, quick: bool) -> None:
        import flow

        for row in flow.WORKLOADS[name](quick):
            ok = row.pop("ok")
            value = row.pop("value")
            report.add(Row(values={OFFLOAD: value}, result="" if ok is None else verdict(ok), table="flow", **row))

    return run


WORKLOADS: dict[str, Callable[[Report, bool], None]] = {
    "W1": w1_throughput,
    "W2": w2_enqueue,
    "W3": w3_latency,
    "W4": w4_sleepers,
    "MEM": mem_growth,
    "J1": journal_workload(durable.j1_throughput),
    "J2": journal_workload(durable.j2_enqueue),
    "J3": journal_workload(durable.j3_recovery),
    "RATE": flow_workload("RATE"),
    "SCHED": flow_workload("SCHED"),
}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"- CPU: {model}, {cores} logical cores ({usable} usable by this process)\n"
        f"- Python: {python} ({sys.executable}), switch interval {sys.getswitchinterval() * 1e3:g} ms\n"
        f"- OS: {platform.platform()}\n"
        f"- offload {offload.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run")
    parser.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument("--memory-child", nargs=2, type=int, metavar=("SMALL", "LARGE"), help=argparse.SUPPRESS)
    parser.add_argument("--recovery-child", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    if args.recovery_child:
        durable.recovery_child(args.recovery_child[0], int(args.recovery_child[1]))
        return 0
    selected = [name.strip().upper() for name in args.only.split(",") if name.strip()] or list(WORKLOADS)
    unknown = [name for name in selected if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    report = Report()
    started = perf_counter()
    for name in selected:
        WORKLOADS[name](report, args.quick)
    mode = "quick (scaled down)" if args.quick else "full"
    print(f"## offload benchmarks ({mode})\n")
    print(machine())
    print()
    print(report.markdown())
    print()
    missed = sum("MISSED" in row.result for row in report.rows)
    summary = f"{missed} target(s) MISSED" if missed else "all targets met"
    print(f"{summary}; total {perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
