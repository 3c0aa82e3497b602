"""RunnerSettings: a runner's options as one validated, comparable value."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from . import _validate as check
from ._errors import ConfigurationError

ON_FULL = ("raise", "block")


def default_workers() -> int:
    """``min(32, cpu + 4)``, the same default as ``ThreadPoolExecutor``."""
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Options of a :class:`~offload.Runner`; see its docstring for each one.

    Validated on construction: a bad value raises ``ConfigurationError`` naming
    the option. ``workers=None`` resolves to :func:`default_workers`.
    """

    workers: int | None = None
    queue_size: int = 10_000
    on_full: str = "raise"
    block_timeout: float | None = 10.0
    history: int = 10_000
    drain_timeout: float = 20.0
    idle_timeout: float = 60.0
    abandon_timeout: float = 5.0
    max_abandoned: int | None = None
    eager: bool = False
    journal: Any = None

    def __post_init__(self) -> None:
        owner = "Runner"
        set_ = object.__setattr__
        workers = default_workers() if self.workers is None else self.workers
        if workers == 0 and self.journal is None:
            raise ConfigurationError(
                "Runner: workers=0 (enqueue only) needs a journal, where another process runs them"
            )
        minimum = 0 if self.journal is not None else 1
        set_(self, "workers", check.integer(owner, "workers", workers, minimum=minimum, maximum=1024))
        check.integer(owner, "queue_size", self.queue_size, minimum=1)
        check.choice(owner, "on_full", self.on_full, ON_FULL)
        set_(self, "block_timeout", check.optional_seconds(owner, "block_timeout", self.block_timeout))
        check.integer(owner, "history", self.history, minimum=0)
        set_(self, "drain_timeout", check.seconds(owner, "drain_timeout", self.drain_timeout))
        set_(self, "idle_timeout", check.seconds(owner, "idle_timeout", self.idle_timeout, zero_ok=False))
        set_(self, "abandon_timeout", check.seconds(owner, "abandon_timeout", self.abandon_timeout))
        if self.max_abandoned is not None:
            check.integer(owner, "max_abandoned", self.max_abandoned, minimum=0)
        check.flag(owner, "eager", self.eager)
        if self.journal is not None:
            from .journal._runtime import check_journal_option

            check_journal_option(self.journal, eager=self.eager)

    @property
    def abandon_cap(self) -> int:
        """How many abandoned threads may be replaced (``max_abandoned``, default ``workers``)."""
        assert self.workers is not None
        return self.workers if self.max_abandoned is None else self.max_abandoned

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> RunnerSettings:
        """A copy with ``changes`` applied and validated."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ConfigurationError(
                f"unknown runner option(s) {', '.join(unknown)}; expected some of {', '.join(self.names())}"
            )
        return dataclasses.replace(self, **changes)

    def diff(self, other: RunnerSettings) -> dict[str, tuple[Any, Any]]:
        """Options whose values differ: name -> (self's, other's)."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in self.names()
            if getattr(self, name) != getattr(other, name)
        }
