"""The ready queue's order: higher priority first, FIFO among equals (property-based)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offload._handle import TaskHandle
from offload._ready import ReadyQueue
from offload._task import TaskOptions

OPTIONS = TaskOptions(name="tests.ready")


def handle(n: int, priority: int) -> TaskHandle:
    return TaskHandle(str(n), "t", None, (), {}, OPTIONS, None, 0.0, priority)


operations = st.lists(st.one_of(st.integers(min_value=-3, max_value=3), st.none()), max_size=200)


@given(operations)
def test_pops_follow_priority_then_fifo(ops: list[int | None]) -> None:
    queue = ReadyQueue()
    model: list[tuple[int, int, TaskHandle]] = []  # (-priority, seq, handle)
    for seq, op in enumerate(ops):
        if op is None:  # pop
            got = queue.pop()
            if not model:
                assert got is None
            else:
                model.sort(key=lambda e: (e[0], e[1]))
                assert got is model.pop(0)[2]
        else:
            h = handle(seq, op)
            queue.push(h)
            model.append((-op, seq, h))
    model.sort(key=lambda e: (e[0], e[1]))
    assert list(queue) == [e[2] for e in model]  # iteration does not consume
    assert list(queue.drain()) == [e[2] for e in model]
    assert queue.pop() is None
