"""A child process for the crash tests: enqueue and/or run journal work, then get SIGKILLed.

    python _child.py JOURNAL MODE [options]

Each run of ``record`` appends ``"<n> <pid>\\n"`` to the file in OFFLOAD_TEST_RUNS
(one O_APPEND write: lines never interleave), so the parent counts runs per task.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time

import offload
from offload.journal import SQLiteJournal

RUNS = os.environ.get("OFFLOAD_TEST_RUNS", os.devnull)
_fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
_count = 0
_count_lock = threading.Lock()
_say_at = int(os.environ.get("OFFLOAD_TEST_SAY_AT", "0"))
_go = threading.Event()  # enqueue-run: tasks start once all are enqueued


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


@offload.task(name="crash.record")
def record(n: int) -> int:
    global _count
    _go.wait()
    os.write(_fd, f"{n} {os.getpid()}\n".encode())
    with _count_lock:
        _count += 1
        if _count == _say_at:
            say("reached")
    return n


@offload.task(name="crash.poison")
def poison() -> None:
    os.write(_fd, f"poison {os.getpid()}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


@offload.task(name="crash.hang_once", at_most_once=True)
def hang_once() -> None:
    os.write(_fd, f"hang_once {os.getpid()}\n".encode())
    say("hanging")
    threading.Event().wait(3600)


@offload.task(name="crash.hold_gil")
def hold_gil(n: int) -> None:
    os.write(_fd, f"hold_gil {os.getpid()}\n".encode())
    say("holding")
    # One C call that never releases the GIL (the regex engine backtracking
    # 2**n ways): no heartbeat can be written meanwhile. The test picks n.
    re.match(r"(a+)+$", "a" * n + "b")


def wait_until_done(path: str, total: int, timeout: float) -> bool:
    """Poll the journal until ``total`` rows are finished (child side only)."""
    reader = SQLiteJournal(path, check_on_open=False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            counts = reader.counts()
            if sum(counts[s] for s in ("succeeded", "failed", "cancelled", "interrupted")) >= total:
                return True
            threading.Event().wait(0.02)
        return False
    finally:
        reader.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("mode", choices=["enqueue-run", "run", "enqueue-loop", "enqueue-later", "threads", "one"])
    parser.add_argument("-n", type=int, default=0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--task", default="crash.record")
    parser.add_argument("--total", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    runner = offload.Runner(workers=args.workers, journal=args.journal, queue_size=100_000)
    if args.mode != "enqueue-run":
        _go.set()
    if args.mode == "enqueue-run":
        for n in range(args.n):
            runner.submit(record, n)
        say("enqueued")
        _go.set()
    elif args.mode == "enqueue-later":
        for n in range(args.n):
            runner._enqueue(record, (n,), {}, countdown=1.0)
        say("enqueued")
        threading.Event().wait(3600)
    elif args.mode == "enqueue-loop":
        n = 0
        while True:
            handle = runner.submit(record, n)
            say(handle.id)
            n += 1
    elif args.mode == "threads":

        def produce(first: int) -> None:
            for n in range(first, first + args.n):
                runner.submit(record, n)

        producers = [threading.Thread(target=produce, args=(args.start + i * args.n,)) for i in range(args.threads)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
    elif args.mode == "one":
        task = offload.registered_tasks()[args.task]
        runner.submit(task, *([args.n] if args.task == "crash.hold_gil" else []))
        say("enqueued")
    total = args.total or args.n
    done = wait_until_done(args.journal, total, args.timeout) if total else True
    runner.shutdown(wait=True)
    say("done" if done else "timeout")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
