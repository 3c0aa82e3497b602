from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse

from .tasks import record_order


def enqueue_orders(request: HttpRequest, batch: str, count: int) -> JsonResponse:
    """Enqueue ``count`` tasks that each insert one row; answers at once."""
    for i in range(count):
        record_order.delay(f"{batch}-{i}@example.com")
    return JsonResponse({"pid": os.getpid(), "enqueued": count})
