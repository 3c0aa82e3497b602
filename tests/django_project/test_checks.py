"""``manage.py check`` messages and the validation of ``settings.OFFLOAD``."""

from __future__ import annotations

from typing import Any

import pytest

import offload
from offload.contrib.django.apps import configure_from_settings
from offload.contrib.django.checks import check, check_settings


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages if m.id != "offload.W003")


def test_the_test_project_is_clean() -> None:
    assert ids(check_settings()) == []


POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop"}


def test_persistent_connections_without_hygiene_warn() -> None:
    databases = {"default": {**POSTGRES, "CONN_MAX_AGE": 60}}
    assert ids(check({}, databases)) == []  # hygiene on: fine
    (warning,) = [m for m in check({"CLOSE_CONNECTIONS": False}, databases) if m.id != "offload.W003"]
    assert warning.id == "offload.W001"
    assert "DATABASES['default']" in warning.msg and "CONN_MAX_AGE=60" in warning.msg


def test_sqlite_without_wal_warns() -> None:
    wal = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "db",
        "OPTIONS": {"init_command": "PRAGMA journal_mode = WAL"},
    }
    assert ids(check({}, {"default": wal})) == []
    no_wal = {"default": POSTGRES, "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db"}}
    (warning,) = [m for m in check({}, no_wal) if m.id != "offload.W003"]
    assert warning.id == "offload.W002"
    assert "DATABASES['sqlite']" in warning.msg and "journal_mode=WAL" in warning.hint


def test_an_unknown_on_commit_database_is_an_error() -> None:
    assert ids(check({"ON_COMMIT": False, "ON_COMMIT_DATABASE": "replica"}, {"default": POSTGRES})) == []
    (error,) = [m for m in check({"ON_COMMIT_DATABASE": "replica"}, {"default": POSTGRES}) if m.id == "offload.E001"]
    assert "'replica'" in error.msg


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"WORKERS": 0}, "workers"),
        ({"WORKERS": "eight"}, "workers"),
        ({"QUEUE_SIZE": -1}, "queue_size"),
        ({"ON_FULL": "drop"}, "on_full"),
        ({"ON_COMMIT": "yes"}, "ON_COMMIT"),
        ({"ON_COMMIT_DATABASE": ""}, "ON_COMMIT_DATABASE"),
        ({"CLOSE_CONNECTIONS": 1}, "CLOSE_CONNECTIONS"),
        ({"WORKER": 4}, "unknown key(s) WORKER"),
        (["WORKERS", 4], "must be a dict"),
    ],
)
def test_bad_offload_settings_are_refused_by_name(settings: Any, value: object, message: str) -> None:
    settings.OFFLOAD = value
    with pytest.raises(offload.ConfigurationError, match=r"settings\.OFFLOAD") as info:
        configure_from_settings()
    assert message in str(info.value)
