"""Keep ``fork()`` from happening while a thread is inside SQLite.

SQLite holds process-wide mutexes during its calls. A child forked while
another thread of the parent held one would hang at its first SQLite call
(only the forking thread survives in the child, the mutex stays taken). Every
journal call into SQLite passes through :data:`gate`; a fork first waits (a
bounded time) until no call is in progress, and holds new ones off until it is
done.
"""

from __future__ import annotations

import os
import threading

# Most seconds a fork waits for SQLite calls in progress (a stuck disk must not hang fork()).
FORK_WAIT = 5.0


class ForkGate:
    """Counts threads inside SQLite; fork() waits for zero."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._forking = False
        self._pid = os.getpid()

    def __enter__(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._inside += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._inside -= 1
            if self._forking and not self._inside:
                self._cond.notify_all()

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            self._cond.wait_for(lambda: not self._inside, timeout=FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        """Start afresh (the parent's threads do not exist here); once per process.

        Called by the fork handler, and earlier by a runner that starts a thread
        from its own fork handler, before that thread can reach the gate.
        """
        if self._pid != os.getpid():
            self.__init__()  # type: ignore[misc]


gate = ForkGate()
os.register_at_fork(
    before=gate.before_fork, after_in_parent=gate.after_fork_in_parent, after_in_child=gate.after_fork_in_child
)
