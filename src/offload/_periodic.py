"""Periodic tasks: ``@offload.periodic(every=...)`` and ``@offload.periodic(cron=...)``.

Declared at import time (like Celery beat schedules), run by the *beat*: one
thread per process, started by :meth:`Runner.start` (``offload.start()`` for the
default runner) on that runner. However many runners a process has, only one
runs the beat, so a tick fires once per process; it stops when its runner
shuts down.

Several processes (gunicorn/uvicorn workers) each run a beat. Each tick is
*claimed* before it is enqueued: a small state file per task in ``state_dir``,
locked with ``fcntl.flock``, holds the last tick fired. The first process to
claim a tick enqueues it; the others see it taken and skip it. So a tick fires
once per host. The same file tells a restarted process which ticks were
missed while nothing ran: ``missed="skip"`` (default) waits for the next tick,
``missed="run_once"`` fires one run at start for all the missed ones.

Tick times are wall-clock and deterministic, so every process computes the same
ones: ``every=N`` ticks at multiples of N seconds since the Unix epoch (so
``every=3600`` fires on the hour, UTC), ``cron=`` ticks where the expression
matches in ``tz`` (UTC by default; parsed by ``croniter``, the ``offload[cron]``
extra).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _validate as check
from ._errors import ConfigurationError, EnqueueError
from ._flow import takes_context
from ._log import runner_log
from ._task import Task, callable_name, task

if TYPE_CHECKING:
    from ._runner import Runner

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: ticks are coordinated within a process only
    fcntl = None  # type: ignore[assignment]

MISSED = ("skip", "run_once")

P = ParamSpec("P")
R = TypeVar("R")


class Schedule:
    """When one periodic task fires."""

    def __init__(self, task: Task[Any, Any], every: float | None, cron: str | None, tz: tzinfo, missed: str) -> None:
        self.task = task
        self.every = every
        self.cron = cron
        self.tz = tz
        self.missed = missed
        self.next_at: float | None = None  # wall time of the next tick (set by the beat)

    @property
    def name(self) -> str:
        return self.task.name

    def describe(self) -> str:
        return f"every {self.every:g}s" if self.every is not None else f"cron {self.cron!r} ({self.tz})"

    def next_after(self, when: float) -> float:
        """The first tick strictly after ``when`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(when / self.every) + 1) * self.every
        from croniter import croniter

        start = datetime.fromtimestamp(when, self.tz)
        return float(croniter(self.cron, start).get_next(float))

    def last_at_or_before(self, when: float) -> float:
        """The latest tick at or before ``when``."""
        if self.every is not None:
            return math.floor(when / self.every) * self.every
        from croniter import croniter

        start = datetime.fromtimestamp(when + 1e-6, self.tz)
        return float(croniter(self.cron, start).get_prev(float))


_schedules: dict[str, Schedule] = {}
_lock = threading.Lock()
_beat: Beat | None = None


def periodic_tasks() -> dict[str, Schedule]:
    """A copy of the declared periodic schedules, by task name."""
    with _lock:
        return dict(_schedules)


def periodic(
    *,
    every: float | None = None,
    cron: str | None = None,
    tz: str | tzinfo | None = None,
    missed: str = "skip",
    **task_options: Any,
) -> Callable[[Callable[P, R] | Task[P, R]], Task[P, R]]:
    """Declare a task that runs on a schedule, once per tick per host.

    Usage::

        @offload.periodic(every=60)
        def refresh_rates(): ...

        @offload.periodic(cron="*/5 * * * *", tz="Europe/Paris", retries=2)
        def sync_inventory(): ...

    Args:
        every: seconds between ticks (> 0); ticks fall on multiples of it since the epoch.
        cron: a five-field cron expression (needs ``pip install 'offload[cron]'``).
        tz: time zone of ``cron``: a zoneinfo name or a ``tzinfo``; UTC by default.
        missed: ticks missed while no process ran: ``"skip"`` them (default) or
            ``"run_once"`` at start-up.
        **task_options: options of :func:`offload.task` (``retries``, ``timeout``...).

    The function takes no arguments (or only a ``context``). Ticks start when a
    runner is started with :meth:`Runner.start` / ``offload.start()``.

    Raises:
        ConfigurationError: a bad schedule or option (named in the message).
    """

    def declare(func: Callable[P, R] | Task[P, R]) -> Task[P, R]:
        if isinstance(func, Task):
            if task_options:
                raise ConfigurationError(
                    f"task {func.name!r}: give task options to @periodic or to @task, not to both "
                    f"(got {', '.join(sorted(task_options))})"
                )
            name, fn_, bind = func.name, func.fn, func.options.bind
        elif callable(func):
            name = task_options.get("name") or callable_name(func)
            fn_, bind = func, bool(task_options.get("bind")) or takes_context(func)
        else:
            raise ConfigurationError(f"@periodic must decorate a function, got {func!r}")
        # The schedule is checked before the task is declared: a bad one registers nothing.
        owner = f"task {name!r}"
        when = check_schedule(owner, every=every, cron=cron, tz=tz, missed=missed)
        _check_no_arguments(owner, fn_, bind)
        declared = func if isinstance(func, Task) else task(**task_options)(func)
        schedule = Schedule(declared, *when)
        with _lock:
            _schedules[declared.name] = schedule
            beat = _beat
        if beat is not None:
            beat.wake()
        return declared

    return declare


def check_schedule(owner: str, *, every: Any, cron: Any, tz: Any, missed: Any) -> tuple[Any, ...]:
    """Validate a schedule; return ``(every, cron, tz, missed)`` for :class:`Schedule`."""
    if (every is None) == (cron is None):
        raise ConfigurationError(f"{owner}: @periodic needs exactly one of every= or cron=")
    missed = check.choice(owner, "missed", missed, MISSED)
    if every is not None:
        if tz is not None:
            raise ConfigurationError(f"{owner}: tz applies to cron= only; every= ticks are counted from the epoch")
        return check.seconds(owner, "every", every, zero_ok=False), None, timezone.utc, missed
    cron, zone = _check_cron(owner, cron), _zone(owner, tz)
    try:  # valid syntax that never matches ("0 0 30 2 *") fails here, not in the beat
        Schedule(None, None, cron, zone, missed).next_after(time.time())  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"{owner}: cron {cron!r} never matches a date ({exc})") from None
    return None, cron, zone, missed


def _check_no_arguments(owner: str, fn: Callable[..., Any], bind: bool) -> None:
    import inspect

    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return
    if bind and parameters:
        parameters = parameters[1:]
    required = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise ConfigurationError(
            f"{owner}: a periodic task is called without arguments, but it requires {', '.join(required)}"
        )


def _check_cron(owner: str, cron: Any) -> str:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            f"{owner}: cron= needs the croniter package: pip install 'offload[cron]' (or use every=)"
        ) from None
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ConfigurationError(f"{owner}: cron must be a valid cron expression like '*/5 * * * *', got {cron!r}")
    return cron


def _zone(owner: str, tz: Any) -> tzinfo:
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
            pass
    raise ConfigurationError(f"{owner}: tz must be a time zone name like 'Europe/Paris' or a tzinfo, got {tz!r}")


def unschedule(name: str) -> bool:
    """Remove the schedule of the periodic task ``name`` (the task stays declared)."""
    with _lock:
        return _schedules.pop(name, None) is not None


# -- claiming ticks across processes ---------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def default_state_dir() -> Path:
    """``<tmp>/offload-periodic-<uid>-<hash of the working directory>``: one per app on a host."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    app = hashlib.sha256(os.getcwd().encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"offload-periodic-{uid}-{app}"


class TickClaims:
    """Per-task state files holding the last tick fired, shared by the host's processes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]  # names differing only in unsafe characters
        return self.directory / f"{_UNSAFE.sub('_', name)[:100]}-{digest}.tick"

    def _locked(self, name: str, update: Callable[[float | None], float | None]) -> float | None:
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            try:
                last: float | None = float(text) if text else None
            except ValueError:
                last = None  # damaged: treat as never fired
            new = update(last)
            if new is not None:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, repr(new).encode("ascii"))
            return last
        finally:
            os.close(fd)  # releases the lock

    def last(self, name: str) -> float | None:
        return self._locked(name, lambda last: None)

    def claim(self, name: str, tick: float) -> bool:
        """Record ``tick`` as fired; False if this or a later tick was fired already."""
        claimed = False

        def update(last: float | None) -> float | None:
            nonlocal claimed
            if last is not None and last >= tick:
                return None
            claimed = True
            return tick

        self._locked(name, update)
        return claimed


# -- the beat ------------------------------------------------------------------------------------


class Beat:
    """The thread that enqueues periodic ticks on one runner."""

    def __init__(self, runner: Runner, claims: TickClaims) -> None:
        self.runner = runner
        self.claims = claims
        self.cond = threading.Condition()
        self.stopped = False
        self.settled = False  # waiting for a future tick, nothing due
        self.settled_at = -math.inf  # the wall time it last settled at
        self.fired = 0
        self.skipped = 0
        self.thread = threading.Thread(target=self._run, name=f"{runner.name}-beat", daemon=True)

    def start(self) -> None:
        now = self.runner._wall()
        for schedule in periodic_tasks().values():
            self._plan(schedule, now, starting=True)
        self.thread.start()

    def _plan(self, schedule: Schedule, now: float, *, starting: bool) -> None:
        try:
            self._plan_next(schedule, now, starting=starting)
        except Exception:  # a croniter error, an unreadable state file: stop this schedule, not the beat
            runner_log.exception("periodic task %s: cannot plan its next tick; it will not run", schedule.name)
            schedule.next_at = math.inf

    def _plan_next(self, schedule: Schedule, now: float, *, starting: bool) -> None:
        schedule.next_at = schedule.next_after(now)
        if not starting or schedule.missed != "run_once":
            return
        last = self.claims.last(schedule.name)
        if last is not None and schedule.next_after(last) <= now:
            schedule.next_at = schedule.last_at_or_before(now)  # one run now for the missed ticks

    def wake(self) -> None:
        """A schedule was declared: plan it from now (not from when the thread wakes up)."""
        with self.cond:
            now = self.runner._wall()
            for schedule in periodic_tasks().values():
                if schedule.next_at is None:
                    self._plan(schedule, now, starting=False)
            self.settled = False
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        if self.thread is not threading.current_thread() and self.thread.ident is not None:
            self.thread.join(timeout=5.0)

    def _run(self) -> None:
        clock = self.runner._clock
        with self.cond:
            while not self.stopped:
                now = self.runner._wall()
                schedules = list(periodic_tasks().values())
                for schedule in schedules:
                    if schedule.next_at is None:
                        self._plan(schedule, now, starting=False)  # declared after the beat started
                due = [s for s in schedules if s.next_at is not None and s.next_at <= now]
                if due:
                    for schedule in due:
                        try:
                            self._fire(schedule, now)
                        except Exception:  # never kill the beat: stop this schedule only
                            runner_log.exception("periodic task %s: tick failed; it will not run again", schedule.name)
                            schedule.next_at = math.inf
                    continue
                self.settled = True
                self.settled_at = now
                self.cond.notify_all()
                soonest = min(
                    (s.next_at for s in schedules if s.next_at is not None and s.next_at < math.inf), default=None
                )
                deadline = None if soonest is None else clock.monotonic() + (soonest - now)
                clock.wait(self.cond, deadline)
                self.settled = False

    def _fire(self, schedule: Schedule, now: float) -> None:
        assert schedule.next_at is not None
        # Late (the process was busy or suspended): fire the latest due tick once.
        tick = max(schedule.next_at, schedule.last_at_or_before(now))
        schedule.next_at = schedule.next_after(max(tick, now))
        try:
            mine = self.claims.claim(schedule.name, tick)
        except OSError:
            runner_log.exception("periodic task %s: cannot claim tick %s; firing anyway", schedule.name, tick)
            mine = True
        if not mine:
            self.skipped += 1
            return  # another process fired this tick
        try:
            self.runner._enqueue(schedule.task, (), {})
        except EnqueueError as exc:
            runner_log.warning("periodic task %s: tick %s not enqueued: %s", schedule.name, _iso(tick), exc)
            self.skipped += 1
            return
        self.fired += 1

    def wait_settled(self, now: float, timeout: float) -> bool:
        """Block until every tick due at wall time ``now`` was handled (for tests); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: (self.settled and self.settled_at >= now) or self.stopped, timeout)


def _iso(tick: float) -> str:
    return datetime.fromtimestamp(tick, timezone.utc).isoformat()


def start_beat(runner: Runner, state_dir: str | os.PathLike[str] | None) -> Beat | None:
    """Start the process's beat on ``runner`` unless one runs already; return it (or None)."""
    global _beat
    with _lock:
        if _beat is not None and not _beat.stopped:
            return _beat if _beat.runner is runner else None
        if not _schedules:
            return None
        try:
            directory = Path(state_dir) if state_dir is not None else default_state_dir()
            claims = TickClaims(directory)
        except OSError as exc:  # not creatable, not a directory, or no working directory
            raise ConfigurationError(f"Runner.start(): cannot use state_dir {state_dir!r}: {exc}") from exc
        beat = _beat = Beat(runner, claims)
    beat.start()
    runner_log.info(
        "periodic tasks started on runner %r: %s",
        runner.name,
        "; ".join(f"{s.name} {s.describe()}" for s in periodic_tasks().values()),
    )
    return beat


def stop_beat(runner: Runner) -> None:
    """Stop the beat if ``runner`` runs it (at shutdown)."""
    global _beat
    with _lock:
        beat = _beat
        if beat is None or beat.runner is not runner:
            return
        _beat = None
    beat.stop()


def current_beat() -> Beat | None:
    return _beat


def _after_fork_in_child() -> None:
    global _beat
    _beat = None  # its thread does not exist in the child


os.register_at_fork(after_in_child=_after_fork_in_child)
