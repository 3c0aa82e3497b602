"""The staff dashboard mounted in the Django site: Django's auth in front, Django's CSRF on actions."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

import offload
from offload import State

from ..conftest import WAIT

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/ops/offload/"


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("ops", password="pw", is_staff=True)


@pytest.fixture
def browser(staff: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    return client


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def csrf_of(page: bytes) -> str:
    match = re.search(rb'name="csrf-token" content="([^"]+)"', page)
    assert match, "the page embeds a CSRF token"
    return match.group(1).decode()


def test_anonymous_users_are_sent_to_the_login_page() -> None:
    reply = Client().get(URL)
    assert reply.status_code == 302
    assert reply["Location"].startswith("/login/?next=/ops/offload/")


def test_users_who_are_not_staff_are_refused() -> None:
    client = Client()
    client.force_login(User.objects.create_user("customer", password="pw"))
    assert client.get(URL).status_code == 403
    assert client.get(URL + "api/stats").status_code == 403
    assert client.post(URL + "purge").status_code == 403


def test_staff_see_the_pages_and_the_api(browser: Client) -> None:
    assert offload.submit(int, "4").result(timeout=WAIT) == 4
    page = browser.get(URL)
    assert page.status_code == 200
    assert b"offload" in page.content and "default-src" in page["Content-Security-Policy"]
    assert b'href="/ops/offload/tasks' in page.content  # links stay under the mount
    stats = browser.get(URL + "api/stats").json()
    assert stats["counts"]["succeeded"] == 1


def test_a_permission_instead_of_is_staff(settings: object) -> None:
    settings.OFFLOAD = {"WORKERS": 2, "DASHBOARD_PERMISSION": "auth.view_user"}  # type: ignore[attr-defined]
    viewer = User.objects.create_user("viewer", password="pw")
    client = Client()
    client.force_login(viewer)
    assert client.get(URL).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(User.objects.get(pk=viewer.pk))  # a fresh user: permissions are cached
    assert client.get(URL).status_code == 200


def test_actions_need_djangos_csrf_token(browser: Client, gate: threading.Event) -> None:
    offload.configure(workers=1)
    busy = offload.submit(gate.wait, WAIT)  # takes the only worker
    queued = offload.submit(int, "1")
    assert queued.state is State.QUEUED
    refused = browser.post(f"{URL}api/tasks/{queued.id}/cancel")
    assert refused.status_code == 403 and queued.state is State.QUEUED
    forged = browser.post(f"{URL}api/tasks/{queued.id}/cancel", HTTP_X_CSRF_TOKEN="x" * 64)
    assert forged.status_code == 403 and queued.state is State.QUEUED
    token = csrf_of(browser.get(URL).content)
    done = browser.post(f"{URL}api/tasks/{queued.id}/cancel", HTTP_X_CSRF_TOKEN=token)
    assert done.status_code == 200, done.content
    assert queued.state is State.CANCELLED
    gate.set()
    assert busy.result(timeout=WAIT) is True


def test_a_form_post_with_the_token_in_the_csrf_field(browser: Client) -> None:
    token = csrf_of(browser.get(URL).content)
    reply = browser.post(URL + "purge", {"csrf": token})
    assert reply.status_code in (200, 303), reply.content
