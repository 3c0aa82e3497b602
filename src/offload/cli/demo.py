"""``offload demo``: a scripted scenario shaped like web post-processing.

A few hundred tasks arrive the way they do behind a web app (welcome mails,
thumbnails, invoice PDFs, webhooks) and run on a bounded pool. The outcomes are
planned from ``--seed``, so a run is repeatable: most tasks succeed, some fail
and are retried with backoff until they succeed, a few webhooks run out of
retries, one bad upload is refused without a retry, and one search-index
rebuild loops past its timeout and is interrupted. The terminal shows the
counts live; the end is a summary table and the failures, tracebacks shortened.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from .. import _validate as check
from .._errors import ConfigurationError
from .._handle import State, TaskHandle
from .._runner import Runner
from .._task import Task, task

# -- the scenario's tasks -------------------------------------------------------

_failures_left: Counter[str] = Counter()  # planned failures per task key, counted down
_failures_lock = threading.Lock()


def _fail_while_planned(key: str, exc: Exception) -> None:
    """Raise ``exc`` as long as failures are planned for ``key`` (one per attempt)."""
    with _failures_lock:
        if _failures_left[key] <= 0:
            return
        _failures_left[key] -= 1
    raise exc


class SMTPTemporaryError(ConnectionError):
    """A 4xx reply: the mail server asks to be tried again later."""


class WebhookDeliveryError(ConnectionError):
    """The receiving endpoint answered 5xx or did not answer."""


@task(name="demo.send_welcome_email", retries=4, backoff=0.05, max_backoff=0.4, retry_on=(SMTPTemporaryError,))
def send_welcome_email(user_id: int) -> str:
    time.sleep(0.004)  # the SMTP round trip
    _fail_while_planned(f"mail:{user_id}", SMTPTemporaryError(f"421 4.7.0 try again later (user {user_id})"))
    return f"mail to user {user_id} sent"


@task(name="demo.make_thumbnail", retries=2, backoff=0.05, retry_on=(OSError,))
def make_thumbnail(photo_id: int, corrupt: bool = False) -> str:
    time.sleep(0.008)  # read, scale, write
    if corrupt:
        raise ValueError(f"photo {photo_id}: not a JPEG (bad magic bytes b'\\x89PN')")
    return f"thumbnail of photo {photo_id}"


@task(name="demo.render_invoice_pdf", retries=2, backoff=0.05)
def render_invoice_pdf(order_id: int) -> int:
    time.sleep(0.015)  # template + PDF rendering
    return 20_000 + order_id  # size in bytes


@task(name="demo.deliver_webhook", retries=3, backoff=0.05, max_backoff=0.4, retry_on=(WebhookDeliveryError,))
def deliver_webhook(endpoint: str, event_id: int) -> str:
    time.sleep(0.006)
    _fail_while_planned(f"hook:{event_id}", WebhookDeliveryError(f"POST {endpoint}: 503 Service Unavailable"))
    return f"event {event_id} delivered to {endpoint}"


@task(name="demo.rebuild_search_index", timeout=1.0)
def rebuild_search_index() -> int:
    # Pure-Python work that never ends: the timeout interrupts it at the next bytecode.
    n = 0
    while True:
        n += 1


# -- the plan -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    task: Task[Any, Any]
    args: tuple[Any, ...]
    failures: int = 0  # attempts planned to fail before one succeeds
    key: str = ""


def plan(n: int, seed: int) -> list[Job]:
    """``n`` jobs in arrival order; the same seed gives the same scenario."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    for i in range(n - 1):
        roll = rng.random()
        if roll < 0.40:
            failures = rng.choice((1, 1, 2, 3)) if rng.random() < 0.15 else 0
            jobs.append(Job(send_welcome_email, (1000 + i,), failures, f"mail:{1000 + i}"))
        elif roll < 0.70:
            jobs.append(Job(make_thumbnail, (5000 + i, rng.random() < 0.01)))
        elif roll < 0.88:
            jobs.append(Job(render_invoice_pdf, (9000 + i,)))
        else:
            down = rng.random() < 0.25  # this endpoint stays down longer than 3 retries
            failures = 99 if down else (rng.choice((0, 1, 2)))
            endpoint = "https://hooks.example.net/orders" if not down else "https://legacy-erp.example.com/hook"
            jobs.append(Job(deliver_webhook, (endpoint, i), failures, f"hook:{i}"))
    # The one long job arrives early, so its timeout fires while the rest is running.
    jobs.insert(min(len(jobs), n // 10), Job(rebuild_search_index, ()))
    return jobs


# -- the live view ------------------------------------------------------------

_SHOWN = (State.QUEUED, State.RUNNING, State.RETRYING, State.SUCCEEDED, State.FAILED)


class Progress:
    """One status line: rewritten in place on a terminal, a line a second otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.last = 0.0

    def show(self, runner: Runner, submitted: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.1 if self.tty else 1.0):
            return
        self.last = now
        stats = runner.stats()
        counts = stats.counts
        done = counts[State.SUCCEEDED] + counts[State.FAILED] + counts[State.CANCELLED]
        elapsed = now - self.started
        width = 24
        filled = width * done // self.total if self.total else width
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done:>4}/{self.total} "
            + " ".join(f"{state.value} {counts[state]:>3}" for state in _SHOWN)
            + f" | submitted {submitted:>4} | {done / elapsed if elapsed else 0.0:6.0f} tasks/s | {elapsed:4.1f}s"
        )
        if self.tty:
            self.out.write("\r\033[2K" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


# -- the report ---------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def summary(handles: Sequence[TaskHandle]) -> str:
    """Per task name: outcomes, retries and time from enqueue to done."""
    by_name: dict[str, list[TaskHandle]] = {}
    for handle in handles:
        by_name.setdefault(handle.name, []).append(handle)
    rows = [["task", "tasks", "succeeded", "failed", "retries", "p50 ms", "max ms"]]
    for name, group in [*sorted(by_name.items()), ("total", list(handles))]:
        times = sorted((h.finished_at or h.created_at) - h.created_at for h in group)
        rows.append(
            [
                name,
                str(len(group)),
                str(sum(h.state is State.SUCCEEDED for h in group)),
                str(sum(h.state is State.FAILED for h in group)),
                str(sum(max(0, h.attempts - 1) for h in group)),
                _ms(times[len(times) // 2]),
                _ms(times[-1]),
            ]
        )
    return _table(rows)


def short_traceback(text: str, frames: int = 2) -> list[str]:
    """The last ``frames`` frames of a formatted traceback and its exception line(s)."""
    lines = text.rstrip("\n").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not starts:
        return lines[-1:]
    kept = min(frames, len(starts))
    omitted = len(starts) - kept
    head = f"Traceback ({omitted} outer frame(s) omitted):" if omitted else "Traceback:"
    return [head, *lines[starts[-kept] :]]


def failures(handles: Sequence[TaskHandle]) -> str:
    """Failed tasks grouped by task name and error class, one shortened traceback each."""
    groups: dict[tuple[str, str], list[TaskHandle]] = {}
    for handle in handles:
        if handle.state is State.FAILED and handle.error is not None:
            groups.setdefault((handle.name, handle.error.type), []).append(handle)
    total = sum(len(group) for group in groups.values())
    out = [f"Failures: {total} task(s) in {len(groups)} group(s)"]
    for (name, error_type), group in groups.items():
        first = group[0]
        assert first.error is not None
        out.append(f"\n* {name}: {len(group)} x {error_type}, after {first.attempts} attempt(s) each")
        out.append("    ids: " + ", ".join(h.id for h in group))
        out.extend("    " + line for line in short_traceback(first.error.traceback))
    return "\n".join(out)


class _Count(logging.Handler):
    """Counts the offload log records of the run (the demo prints them with --log)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_level: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.by_level[record.levelname] += 1


# -- the command --------------------------------------------------------------


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run a live demo of a few hundred tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=300, help="tasks in the scenario (default 300, at least 10)")
    parser.add_argument("--workers", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--rate", type=float, default=100.0, help="tasks arriving per second (default 100)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the planned outcomes (default 7)")
    parser.add_argument("--log", action="store_true", help="also print offload's WARNING/ERROR log records")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="repeat the scenario with the dashboard open on loopback (prints its URL; Ctrl-C stops)",
    )
    parser.add_argument("--port", type=int, default=8765, help="dashboard port with --serve (default 8765, 0: any)")
    parser.add_argument("--rounds", type=int, default=0, help="with --serve: stop after N rounds (default: never)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        n = check.integer("offload demo", "--tasks", args.tasks, minimum=10, maximum=100_000)
        rate = float(args.rate)
        if not 0 < rate <= 1e6:  # also refuses nan
            raise ConfigurationError(f"offload demo: --rate must be in (0, 1e6] tasks per second, got {args.rate!r}")
        port = check.integer("offload demo", "--port", args.port, minimum=0, maximum=65535)
        rounds = check.integer("offload demo", "--rounds", args.rounds, minimum=0)
        runner = Runner(workers=args.workers, queue_size=max(n, 10), name="demo")
    except ConfigurationError as exc:
        print(f"offload demo: error: {exc}", file=sys.stderr)
        return 2
    jobs = plan(n, args.seed)
    if args.serve:
        return serve_scenario(runner, jobs, rate, port=port, rounds=rounds, out=sys.stdout)
    return scenario(runner, jobs, rate, show_log=args.log, out=sys.stdout)


def one_round(runner: Runner, jobs: Sequence[Job], rate: float, progress: Progress) -> list[TaskHandle]:
    """Submit ``jobs`` at ``rate`` per second and wait for all of them, showing progress."""
    with _failures_lock:
        _failures_left.clear()
        _failures_left.update({job.key: job.failures for job in jobs if job.failures})
    handles: list[TaskHandle] = []
    submit: Callable[..., TaskHandle] = runner.submit
    for i, job in enumerate(jobs):
        pause = progress.started + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # requests arrive over time, not all at once
        handles.append(submit(job.task, *job.args))
        progress.show(runner, len(handles))
    while not runner.join(timeout=0.1):
        progress.show(runner, len(handles))
    progress.show(runner, len(handles), final=True)
    return handles


def serve_scenario(runner: Runner, jobs: Sequence[Job], rate: float, *, port: int, rounds: int, out: TextIO) -> int:
    """The scenario again and again on one runner, with its dashboard served on loopback."""
    from ..dashboard import serve

    logging.getLogger("offload").addHandler(logging.NullHandler())  # failures are on the dashboard
    server = serve(runner, port=port, background=True)
    out.write(f"offload demo: dashboard at {server.url} (read-only; Ctrl-C to stop)\n")
    out.flush()
    done = 0
    try:
        with runner:
            while rounds == 0 or done < rounds:
                handles = one_round(runner, jobs, rate, Progress(out, len(jobs)))
                done += 1
                failed = sum(h.state is State.FAILED for h in handles)
                out.write(f"round {done}: {len(handles)} tasks, {failed} failed; see {server.url}\n")
                out.flush()
    except KeyboardInterrupt:
        out.write("\noffload demo: stopping\n")
    finally:
        server.stop()
    return 0


def scenario(runner: Runner, jobs: Sequence[Job], rate: float, *, show_log: bool, out: TextIO) -> int:
    """Submit ``jobs`` at ``rate`` per second, show progress, report; 0 if every task finished."""
    logger = logging.getLogger("offload")
    counter = _Count()
    logger.addHandler(counter)
    stream: logging.Handler | None = None
    if show_log:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(stream)
    # Without --log the counter is the only handler: Python's last-resort handler stays
    # silent, so tracebacks do not tear through the live view (the report shows them).
    out.write(f"offload demo: {len(jobs)} tasks arriving at {rate:g}/s on {runner.settings.workers} worker threads\n")
    progress = Progress(out, len(jobs))
    try:
        with runner:
            handles = one_round(runner, jobs, rate, progress)
    finally:
        logger.removeHandler(counter)
        if stream is not None:
            logger.removeHandler(stream)
    elapsed = time.monotonic() - progress.started
    stats = runner.stats()
    out.write("\n" + summary(handles) + "\n\n")
    p50 = stats.run_time_p50 or 0.0
    p99 = stats.run_time_p99 or 0.0
    out.write(
        f"{len(handles)} tasks in {elapsed:.1f}s on {stats.workers} workers: "
        f"{stats.retries} retries, {stats.failed_attempts} failed attempts, "
        f"{stats.abandoned_threads} abandoned thread(s); attempt run time p50 {_ms(p50)} ms, p99 {_ms(p99)} ms\n"
    )
    levels = ", ".join(f"{count} {level}" for level, count in sorted(counter.by_level.items())) or "none"
    hint = "" if show_log else " (run with --log to see them)"
    out.write(f"offload logged {levels} record(s) at WARNING and above{hint}\n\n")
    out.write(failures(handles) + "\n")
    unfinished = [h for h in handles if not h.done()]
    if unfinished:
        out.write(f"\n{len(unfinished)} task(s) did not finish: {', '.join(h.id for h in unfinished)}\n")
        return 1
    return 0
