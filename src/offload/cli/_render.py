"""Plain-text tables for the monitoring commands: stable columns, no colours, no width guessing."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ..dashboard import Overview, TaskDetail, TaskSummary
from ..dashboard._model import to_json


def dump_json(record: Any) -> str:
    return json.dumps(to_json(record), indent=2, sort_keys=True)


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def overview(o: Overview) -> str:
    finished = sum(b.succeeded + b.failed for b in o.series)
    failed = sum(b.failed for b in o.series)
    minutes = len(o.series) * o.bucket_seconds / 60
    counts = table(["state", "tasks"], [[state, n] for state, n in o.counts.items()])
    pool = table(
        ["", ""],
        [
            ["queue depth", f"{o.queue_depth} / {o.queue_size}"],
            ["workers busy / idle", f"{o.busy} / {o.idle}"],
            ["threads / max", f"{o.threads} / {o.workers}"],
            ["abandoned threads", o.abandoned_threads],
            ["oldest queued", seconds(o.oldest_queued_age)],
            ["submitted", o.submitted],
            ["retries", o.retries],
            ["run time p50 / p99", f"{seconds(o.run_time_p50)} / {seconds(o.run_time_p99)}"],
            [f"last {minutes:g} min", f"{finished} finished, {failed} failed"],
        ],
    ).split("\n", 1)[1]
    return f"offload status: {o.source} at {when(o.now)}\n\n{counts}\n\n{pool}"


def task_rows(tasks: Sequence[TaskSummary]) -> str:
    return table(
        ["id", "state", "attempts", "created", "name", "error"],
        [
            [t.id, t.state, t.attempts, when(t.created_at), t.name, (t.error_message or "")[:60].replace("\n", " ")]
            for t in tasks
        ],
    )


def detail(d: TaskDetail) -> str:
    t = d.task
    facts: list[list[object]] = [
        ["id", t.id],
        ["name", t.name],
        ["state", t.state],
        ["queue", t.queue],
        ["priority", t.priority],
        ["attempts", t.attempts],
        ["created", when(t.created_at)],
        ["started", when(t.started_at)],
        ["finished", when(t.finished_at)],
        ["next attempt", when(t.next_attempt_at)],
    ]
    if d.cancel_reason:
        facts.append(["cancelled", d.cancel_reason])
    if d.reason and d.reason != d.cancel_reason:
        facts.append(["reason", d.reason])
    if d.owner:
        facts.append(["process", d.owner])
    parts = [table(["field", "value"], facts).split("\n", 1)[1]]
    if d.args is not None and d.kwargs is not None:
        args: list[list[object]] = [[f"args[{i}]", v] for i, v in enumerate(d.args)]
        args += [[k, v] for k, v in d.kwargs.items()]
        parts.append("arguments:\n" + (table(["argument", "value"], args) if args else "(none)"))
    else:
        parts.append("arguments: not kept once a task succeeded or was cancelled")
    attempts = [
        [a.number, when(a.started_at), seconds(a.duration), a.outcome, "" if a.error is None else a.error.type]
        for a in d.attempt_records
    ]
    none = "(none)"
    if t.attempts > 1 or (t.attempts == 1 and t.state != "running"):  # a source without per-attempt records
        none = f"({t.attempts} started; this source keeps no per-attempt records)"
    parts.append(
        "attempts:\n" + (table(["#", "started", "duration", "outcome", "error"], attempts) if attempts else none)
    )
    if d.error is not None:
        parts.append(f"error: {d.error.type}: {d.error.message}\n{d.error.traceback.rstrip()}")
    if d.stack:
        parts.append(f"current stack:\n{d.stack.rstrip()}")
    return "\n\n".join(parts)
