"""A real gunicorn with ``--preload -w 4`` serving the test project: views enqueue
1,000 tasks, a SIGTERM stops the server gracefully, and every task has run
(each inserts one row in PostgreSQL), because each worker process drains offload
at interpreter exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from .shop.models import Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[2]
STARTUP = 60.0  # seconds gunicorn may take to answer; it is polled, not slept on


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited early: {proc.communicate()[1].decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # sleep-ok: waiting for another process to bind its port, bounded
    raise AssertionError(f"gunicorn did not listen on {port} within {STARTUP:g}s")


def test_gunicorn_preload_with_four_workers_loses_no_task() -> None:
    pytest.importorskip("gunicorn")
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "OFFLOAD_TEST_PG_NAME": connection.settings_dict["NAME"],  # the test database
    }
    command = [sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-b", f"127.0.0.1:{port}"]
    command += ["--graceful-timeout", "30", "tests.django_project.wsgi:application"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            wait_until_listening(port, proc)
            pids = set()
            for batch in range(10):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/enqueue/g{batch}/100/", timeout=30) as reply:
                    answer = json.loads(reply.read())
                assert answer["enqueued"] == 100
                pids.add(answer["pid"])
            proc.send_signal(signal.SIGTERM)  # graceful stop: workers exit, offload drains at exit
            _, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    log = stderr.decode()
    assert proc.returncode == 0, log
    assert "dropped" not in log, log
    emails = set(Order.objects.filter(email__startswith="g").values_list("email", flat=True))
    assert len(emails) == 1000, f"{1000 - len(emails)} task(s) lost; served by worker pids {sorted(pids)}"
    assert os.getpid() not in pids
