"""``manage.py shop``: set up the example and serve it, with some orders already flowing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

import offload
from shop.models import Order
from shop.tasks import notify_warehouse, render_invoice, send_confirmation


class Command(BaseCommand):
    help = "Migrate, create the admin/admin staff user, place some orders, then run the dev server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=20, help="orders placed at start (default 20)")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--no-serve", action="store_true", help="process the orders and exit (for tests)")

    def handle(self, *args: Any, orders: int, port: str, no_serve: bool, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
        handles = []
        for i in range(orders):
            with transaction.atomic():
                order = Order.objects.create(email=f"customer{i}@example.com", total_cents=1_000 + i)
                handles += [send_confirmation.delay(order.pk), render_invoice.delay(order.pk)]
                handles.append(notify_warehouse.delay(order.pk))
        self.stdout.write(f"placed {orders} orders: {len(handles)} background tasks")
        if no_serve:
            for handle in handles:
                handle.wait(60)
            stats = offload.stats()
            self.stdout.write(f"succeeded {stats.succeeded}, failed {stats.failed}, retries {stats.retries}")
            return
        self.stdout.write(
            f"shop: http://127.0.0.1:{port}/  dashboard: http://127.0.0.1:{port}/ops/offload/ (admin/admin)"
        )
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
