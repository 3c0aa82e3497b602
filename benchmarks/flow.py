"""Flow-control workloads of the benchmark suite (offload only; run by run.py).

RATE   10,000 no-op tasks under ``rate_limit="2000/s"``: the whole batch must take
       5 s +- 5% (the limit is neither exceeded nor wasted). Baseline: the ideal
       time from the rate itself.
SCHED  100,000 tasks scheduled an hour ahead sit in the timer heap while a steady
       stream of 500 tasks/s, each with ``countdown=0.01``, goes through the same
       heap: the delay from each one's due time to its start (p99 < 2 ms), and
       W3's enqueue-to-start latency of immediate submits beside them, measured
       in the same run with an empty heap as the baseline.

Each function returns plain rows (dicts); run.py turns them into its table.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import offload

perf_counter = time.perf_counter


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))
    return sorted_values[index]


def noop() -> None:
    pass


# -- RATE ------------------------------------------------------------------------------------


def rate_limit(quick: bool) -> list[dict[str, Any]]:
    n, rate, workers = (2_000 if quick else 10_000), 2000, 8
    ideal = n / rate
    task = offload.task(name="benchmarks.rate_limited", rate_limit=f"{rate}/s")(noop)
    log(f"RATE: {n:,} no-op tasks under rate_limit='{rate}/s', {workers} workers (ideal {ideal:.2f} s)")
    runner = offload.Runner(workers=workers, queue_size=n + 10)
    submit = runner.submit
    t0 = perf_counter()
    for _ in range(n):
        submit(task)
    submitted = perf_counter() - t0
    runner.join()
    elapsed = perf_counter() - t0
    stats = runner.stats()
    runner.shutdown()
    measured = n / elapsed
    log(f"  {elapsed:.3f} s ({measured:,.0f} tasks/s; submit loop {submitted * 1e3:.0f} ms)")
    ok = abs(elapsed - ideal) <= 0.05 * ideal and stats.succeeded == n
    return [
        dict(
            workload=f"RATE {n:,} tasks, rate_limit='{rate}/s', {workers} workers",
            metric="wall s (ideal = n / rate)",
            value=f"{elapsed:.3f}",
            ratio=f"{elapsed / ideal:.3f}x ideal",
            target=f"{ideal:.2f} s +- 5%",
            ok=ok,
            note=f"measured rate {measured:,.0f}/s; {stats.succeeded:,} succeeded",
        )
    ]


# -- SCHED -------------------------------------------------------------------------------------


def scheduler(quick: bool) -> list[dict[str, Any]]:
    parked, rate, seconds, workers = (20_000 if quick else 100_000), 500, (1.0 if quick else 4.0), 8
    countdown, reps = 0.010, (1 if quick else 3)
    log(
        f"SCHED: {parked:,} tasks an hour ahead in the heap; {rate}/s for {seconds:g} s, "
        f"countdown {countdown * 1e3:g} ms; median of {reps}"
    )
    # samples[heap][kind][quantile] -> one value per repetition, empty and full heaps interleaved
    samples: dict[int, list[dict[float, list[float]]]] = {
        size: [{0.5: [], 0.99: []}, {0.5: [], 0.99: []}] for size in (0, parked)
    }
    for _ in range(reps):
        for size in (0, parked):
            for kind, latencies in enumerate(_stream(size, rate, seconds, workers, countdown)):
                for q in (0.5, 0.99):
                    samples[size][kind][q].append(percentile(latencies, q))
    rows = []
    for kind, label in enumerate(("due-to-start (countdown tasks)", "enqueue-to-start (immediate tasks)")):
        for metric, q in (("p50", 0.50), ("p99", 0.99)):
            ours, theirs = statistics.median(samples[parked][kind][q]), statistics.median(samples[0][kind][q])
            row: dict[str, Any] = dict(
                workload=f"SCHED {label}, {parked:,} delayed tasks waiting, {rate}/s for {seconds:g} s, "
                f"median of {reps}",
                metric=f"{metric} ms (lower is better)",
                value=f"{ours:.3f}",
                ratio=f"{ours / theirs:.2f}x empty heap ({theirs:.3f})" if theirs > 0 else "",
                target="",
                ok=None,
                note="runs: " + ", ".join(f"{v:.3f}" for v in samples[parked][kind][q]),
            )
            if metric == "p99":
                row["target"] = "p99 < 2 ms"
                row["ok"] = ours < 2.0
            rows.append(row)
    return rows


def _stream(parked: int, rate: int, seconds: float, workers: int, countdown: float) -> tuple[list[float], list[float]]:
    """Latencies in ms: (due-to-start of countdown tasks, enqueue-to-start of immediate ones)."""
    total = int(rate * seconds)
    warmup = rate // 10
    runner = offload.Runner(workers=workers, queue_size=parked + 2 * total + 100)
    far: list[offload.TaskHandle] = []
    t0 = perf_counter()
    enqueue = runner._enqueue
    for _ in range(parked):
        far.append(enqueue(noop, (), {}, countdown=3600.0))
    if parked:
        log(f"  {parked:,} delayed tasks enqueued in {perf_counter() - t0:.2f} s")
    gc.collect()  # like run.py's settle(): the stream is not charged for collecting the set-up
    due = [0.0] * (warmup + total)
    started_delayed = [0.0] * (warmup + total)
    submitted = [0.0] * (warmup + total)
    started_now = [0.0] * (warmup + total)

    def delayed(i: int) -> None:
        started_delayed[i] = perf_counter()

    def immediate(i: int) -> None:
        started_now[i] = perf_counter()

    interval = 1.0 / rate
    sleep = time.sleep
    start = perf_counter()
    for i in range(warmup + total):
        slot = start + i * interval
        pause = slot - perf_counter()
        if pause > 0:
            sleep(pause)
        now = perf_counter()
        due[i] = now + countdown
        enqueue(delayed, (i,), {}, countdown=countdown)
        submitted[i] = perf_counter()
        enqueue(immediate, (i,), {})
    deadline = perf_counter() + 30.0
    while (runner.stats().scheduled > parked or runner.stats().queued or runner.stats().running) and (
        perf_counter() < deadline
    ):
        sleep(0.01)
    for handle in far:
        handle.cancel()
    runner.shutdown()
    del far
    gc.collect()
    delayed_ms = sorted((started_delayed[i] - due[i]) * 1e3 for i in range(warmup, warmup + total))
    immediate_ms = sorted((started_now[i] - submitted[i]) * 1e3 for i in range(warmup, warmup + total))
    log(
        f"  heap {parked:>7,}: due-to-start p50 {percentile(delayed_ms, 0.5):.3f} "
        f"p99 {percentile(delayed_ms, 0.99):.3f} ms; enqueue-to-start p50 {percentile(immediate_ms, 0.5):.3f} "
        f"p99 {percentile(immediate_ms, 0.99):.3f} ms"
    )
    return delayed_ms, immediate_ms


WORKLOADS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {"RATE": rate_limit, "SCHED": scheduler}
