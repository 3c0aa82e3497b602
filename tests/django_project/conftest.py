"""Fixtures of the Django integration tests.

PostgreSQL (127.0.0.1:5432, database ``test``) must be running: locally these
tests skip without it; under ``CI=true`` they run and fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _postgres_problem() -> str | None:
    import psycopg

    try:
        psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in Path(str(item.path)).parents]
    if not ours or os.environ.get("CI", "").lower() == "true":
        return  # under CI a missing service fails the tests instead of skipping them
    problem = _postgres_problem()
    if problem is not None:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(autouse=True)
def _offload_app() -> Iterator[None]:
    """Re-apply settings.OFFLOAD (the suite's root conftest resets offload between tests);
    afterwards drain the Tasks backend's runners so no thread outlives the test."""
    from offload.contrib.django import backend, results
    from offload.contrib.django.apps import configure_from_settings

    configure_from_settings()
    results.install_hooks()
    yield
    backend.shutdown_all(timeout=10)
