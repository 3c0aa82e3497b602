"""Tasks imported by the `offload worker` test (``--import tests.journal._worker_tasks``)."""

from __future__ import annotations

import offload


@offload.task(name="worker_test.double")
def double(n: int) -> int:
    return n * 2
