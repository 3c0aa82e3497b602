"""The ready queue: tasks due to run, highest priority first, FIFO among equals.

Most tasks share the default priority, so those sit in one deque (O(1) push and
pop, like ``SimpleQueue``); other priorities get a deque each, found through a
small heap of the priorities present. Entries of cancelled tasks stay until
popped; the runner skips them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from heapq import heappop, heappush

from ._handle import TaskHandle


class ReadyQueue:
    """Priority-then-FIFO queue of handles; not thread-safe (the runner lock guards it)."""

    __slots__ = ("_default", "_heap", "_levels")

    def __init__(self) -> None:
        self._default: deque[TaskHandle] = deque()  # priority 0
        self._levels: dict[int, deque[TaskHandle]] = {}  # other priorities
        self._heap: list[int] = []  # negated priorities present in _levels

    def push(self, handle: TaskHandle) -> None:
        priority = handle.priority
        if priority == 0:
            self._default.append(handle)
            return
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = deque()
            heappush(self._heap, -priority)
        level.append(handle)

    def pop(self) -> TaskHandle | None:
        heap = self._heap
        if heap and (heap[0] < 0 or not self._default):
            priority = -heap[0]
            level = self._levels[priority]
            handle = level.popleft()
            if not level:
                heappop(heap)
                del self._levels[priority]
            return handle
        if self._default:
            return self._default.popleft()
        return None

    def drain(self) -> Iterator[TaskHandle]:
        """Remove and yield every entry, in priority order."""
        while True:
            handle = self.pop()
            if handle is None:
                return
            yield handle

    def __iter__(self) -> Iterator[TaskHandle]:
        """Every entry in priority order, without removing them."""
        for priority in sorted(self._levels, reverse=True):
            if priority > 0:
                yield from self._levels[priority]
        yield from self._default
        for priority in sorted(self._levels, reverse=True):
            if priority < 0:
                yield from self._levels[priority]
