"""``manage.py check`` messages and the validation of ``settings.OFFLOAD``."""

from __future__ import annotations

import os
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


def test_a_journal_that_cannot_be_written_is_an_error(tmp_path: Any) -> None:
    missing = str(tmp_path / "no-such-dir" / "offload.sqlite3")
    (error,) = [m for m in check({"JOURNAL": missing}, {"default": POSTGRES}) if m.id == "offload.E002"]
    assert "does not exist" in error.msg and "no-such-dir" in error.msg
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        messages = check({"JOURNAL": str(locked / "j.sqlite3")}, {"default": POSTGRES})
        if os.geteuid() != 0:  # root writes anywhere
            assert [m.id for m in messages if m.id == "offload.E002"] == ["offload.E002"]
    finally:
        locked.chmod(0o700)
    assert ids(check({"JOURNAL": str(tmp_path / "ok.sqlite3")}, {"default": POSTGRES})) == []


def test_the_backend_reports_an_unwritable_journal(tmp_path: Any) -> None:
    from offload.contrib.django.backend import OffloadBackend

    backend = OffloadBackend("bad", {"OPTIONS": {"JOURNAL": str(tmp_path / "missing" / "j.sqlite3")}})
    (error,) = backend.check()
    assert error.id == "offload.E102" and "does not exist" in error.msg
