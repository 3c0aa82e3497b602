"""Settings of the Django test project: PostgreSQL as ``default`` (the service at
127.0.0.1:5432, database ``test``), SQLite in WAL mode as ``sqlite``."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "offload-tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "offload.contrib.django",
    "tests.django_project.shop",
]
try:  # Django 6.0+ has the framework built in; 5.2 has the backport app
    import django.tasks  # noqa: F401
except ImportError:
    INSTALLED_APPS.append("django_tasks")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("OFFLOAD_TEST_PG_NAME", "test"),  # a child server uses the test database
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "CONN_MAX_AGE": 0,
        "TEST": {"NAME": os.environ.get("OFFLOAD_TEST_PG_NAME", f"test_offload_{os.getpid()}")},
    },
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), f"offload-tests-{os.getpid()}.sqlite3"),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"offload-tests-{os.getpid()}-test.sqlite3")},
    },
}
ROOT_URLCONF = "tests.django_project.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
LOGIN_URL = "/login/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

OFFLOAD = {"WORKERS": 4, "DRAIN_TIMEOUT": float(os.environ.get("OFFLOAD_TEST_DRAIN", "20"))}

# The Tasks backend's journal; a child process of a test reads the parent's.
TASKS_JOURNAL = os.environ.get(
    "OFFLOAD_TEST_TASKS_JOURNAL", os.path.join(tempfile.gettempdir(), f"offload-tests-{os.getpid()}-tasks.sqlite3")
)

TASKS = {
    "default": {
        "BACKEND": "offload.contrib.django.OffloadBackend",
        "OPTIONS": {"WORKERS": 4, "BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
    },
    "durable": {
        "BACKEND": "offload.contrib.django.OffloadBackend",
        "OPTIONS": {
            "WORKERS": int(os.environ.get("OFFLOAD_TEST_TASKS_WORKERS", "2")),
            "JOURNAL": TASKS_JOURNAL,
            "BACKOFF": 0.01,
            "MAX_BACKOFF": 0.05,
        },
    },
    "immediate": {
        "BACKEND": (
            "django.tasks.backends.immediate.ImmediateBackend"
            if "django_tasks" not in INSTALLED_APPS
            else "django_tasks.backends.immediate.ImmediateBackend"
        )
    },
}
