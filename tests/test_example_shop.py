"""The Django example (examples/django_shop) runs as its README says, in a child process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

MANAGE = Path(__file__).resolve().parents[1] / "examples" / "django_shop" / "manage.py"


def test_the_example_shop_processes_its_orders(tmp_path: Path) -> None:
    pytest.importorskip("django")
    env = {**os.environ, "SHOP_DB": str(tmp_path / "shop.sqlite3"), "SHOP_INVOICES": str(tmp_path / "invoices")}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the example has its own settings
    done = subprocess.run(
        [sys.executable, str(MANAGE), "shop", "--no-serve", "--orders", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "placed 5 orders: 15 background tasks" in done.stdout
    match = re.search(r"succeeded (\d+), failed (\d+), retries (\d+)", done.stdout)
    assert match, done.stdout
    succeeded, failed, _ = map(int, match.groups())
    assert succeeded + failed == 15  # the webhook is flaky on purpose: it may run out of retries
    assert sorted(p.name for p in (tmp_path / "invoices").iterdir()) == [f"invoice-{i}.txt" for i in range(1, 6)]
    assert "Subject: Order 1 confirmed" in done.stdout  # the console mail backend
