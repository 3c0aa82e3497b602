from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import Order
from .tasks import notify_warehouse, render_invoice, send_confirmation


def storefront(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/storefront.html", {"orders": Order.objects.order_by("-pk")[:20]})


@transaction.atomic
def place_order(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect("storefront")
    order = Order.objects.create(email=request.POST.get("email") or "guest@example.com", total_cents=4_200)
    # Inside the transaction: these wait for the commit (offload's ON_COMMIT), so the
    # tasks see the order, and none runs if the order is rolled back.
    send_confirmation.delay(order.pk)
    render_invoice.delay(order.pk)
    notify_warehouse.delay(order.pk)
    messages.success(request, f"Order {order.pk} placed; its mail, invoice and webhook run in the background.")
    return redirect("storefront")
