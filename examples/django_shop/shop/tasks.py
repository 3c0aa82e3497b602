"""What happens after an order is placed, off the request thread."""

from __future__ import annotations

import random

from django.conf import settings
from django.core.mail import send_mail

import offload

from .models import Order


class WarehouseUnavailableError(ConnectionError):
    """The warehouse's endpoint answered 503."""


@offload.task(retries=3, retry_on=(ConnectionError,), timeout=30)
def send_confirmation(order_id: int) -> None:
    order = Order.objects.get(pk=order_id)  # the committed row: enqueued inside the order's transaction
    send_mail(f"Order {order.pk} confirmed", f"Thanks! Total: {order.total_cents / 100:.2f}", None, [order.email])


@offload.task(timeout=60)
def render_invoice(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    settings.INVOICE_DIR.mkdir(exist_ok=True)
    path = settings.INVOICE_DIR / f"invoice-{order.pk}.txt"  # stands in for a PDF renderer
    path.write_text(f"INVOICE {order.pk}\n{order.email}\nTotal {order.total_cents / 100:.2f}\n")
    Order.objects.filter(pk=order.pk).update(invoice=str(path), status="invoiced")
    return str(path)


@offload.task(retries=4, backoff=0.5, max_backoff=4, retry_on=(WarehouseUnavailableError,))
def notify_warehouse(order_id: int) -> str:
    if random.random() < 0.5:  # a flaky endpoint: about half the calls fail
        raise WarehouseUnavailableError(f"POST https://warehouse.example/orders/{order_id}: 503 Service Unavailable")
    return f"warehouse knows about order {order_id}"
