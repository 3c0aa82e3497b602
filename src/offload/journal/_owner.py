"""Owner ids (host, pid and process start time) and whether their process lives.

A pid alone is not an identity: pids are reused. The start time of the process
(``/proc/PID/stat`` field 22 on Linux, in clock ticks since boot) tells a live
owner from a new process that got the same pid. On the same host a dead owner
is therefore known at once, and a live one is never taken over, even when its
heartbeat is late because a long C call holds the GIL. Across hosts (a journal
on a network filesystem, which SQLite does not support well) only the lease is
used.
"""

from __future__ import annotations

import os
import socket
import time

_cached: tuple[int, str] | None = None


def _start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot, or None (no process, zombie, no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":  # a killed child its parent has not reaped yet
        return None
    return fields[19].decode("ascii")


def _host() -> str:
    return socket.gethostname().replace(":", "_") or "localhost"


def owner_id() -> str:
    """This process's owner id: ``host:pid:start``; recomputed after ``fork()``."""
    global _cached
    pid = os.getpid()
    if _cached is not None and _cached[0] == pid:
        return _cached[1]
    start = _start_ticks(pid)
    if start is None:  # no /proc: the time of the first call stands in for the start time
        start = f"t{time.time():.6f}"
    owner = f"{_host()}:{pid}:{start}"
    _cached = (pid, owner)
    return owner


def is_alive(owner: str) -> bool | None:
    """Whether the process behind ``owner`` lives: True, False, or None when it cannot be told."""
    try:
        host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != _host() or pid <= 0:
        return None
    if start.startswith("t"):  # recorded without /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return None
        return None  # a process with that pid exists, maybe not the same one: rely on the lease
    return _start_ticks(pid) == start
