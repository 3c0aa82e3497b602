"""What the journal-backed dashboard costs per call on a large journal.

    python benchmarks/journal_monitor.py [--rows 200000] [--reps 5]

Builds a journal of ``--rows`` rows (1 % failed, the rest succeeded, 10 running,
40 queued, 20 task names, 3 queues) in a temporary directory, then times each
:class:`~offload.dashboard.JournalSource` call a dashboard page makes (mean of
``--reps`` calls after one warm-up call) and prints a Markdown table. No target:
it shows which reads grow with the journal (the per-state counts of the
overview, the per-name table) and which do not (pages, the running list, a task).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

try:
    import offload
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    import offload

from offload.dashboard import JournalSource, TaskQuery
from offload.journal import SQLiteJournal, TaskRecord


def build(path: str, rows: int) -> None:
    journal = SQLiteJournal(path)
    now = time.time()
    try:
        batch: list[TaskRecord] = []
        for i in range(rows):
            created = now - rows + i
            batch.append(
                TaskRecord(
                    id=f"t{i}", name=f"app.task{i % 20}", payload="[[1],{}]", queue=f"q{i % 3}",
                    created_at=created, run_at=created, owner=None,
                )
            )  # fmt: skip
            if len(batch) == 10_000:
                journal.enqueue(batch)
                batch = []
        journal.enqueue(batch)
        finish = (
            "UPDATE tasks SET state = CASE WHEN seq % 100 = 0 THEN 'failed' ELSE 'succeeded' END, "
            "started_at = created_at, finished_at = created_at + 0.5 WHERE seq <= ?"
        )
        run = (
            "UPDATE tasks SET state = 'running', started_at = created_at, owner = 'bench:1:1' "
            "WHERE seq > ? AND seq <= ?"
        )
        journal._write([(finish, (rows - 50,)), (run, (rows - 50, rows - 40))])
        journal.checkpoint()
    finally:
        journal.close()


def timed(fn: Callable[[], Any], reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.sqlite3")
        build(path, args.rows)
        with JournalSource(path) as source:
            calls: list[tuple[str, Callable[[], Any]]] = [
                ("overview (GET /api/stats)", source.overview),
                ("tasks, newest 50", lambda: source.tasks(TaskQuery())),
                ("tasks, state=failed", lambda: source.tasks(TaskQuery(state=offload.State.FAILED))),
                ("tasks, state=queued", lambda: source.tasks(TaskQuery(state=offload.State.QUEUED))),
                ("tasks, queue=q1, offset=1000", lambda: source.tasks(TaskQuery(queue="q1", offset=1000))),
                ("task detail", lambda: source.task("t5")),
                ("names (newest 5,000 rows)", source.names),
                ("running", source.running),
                ("Store.counts (not used: for comparison)", source.store.counts),
            ]
            print(f"journal of {args.rows:,} rows; mean of {args.reps} calls after a warm-up call\n")
            print("| call | ms |\n|---|---|")
            for label, fn in calls:
                print(f"| {label} | {timed(fn, args.reps):.2f} |")


if __name__ == "__main__":
    main()
