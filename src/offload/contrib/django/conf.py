"""The ``OFFLOAD`` settings dict, read and validated once.

Runner options use the upper-case names of :class:`offload.Runner`'s keyword
arguments; the rest belong to the Django integration::

    OFFLOAD = {
        "WORKERS": 8,              # Runner(workers=...)
        "QUEUE_SIZE": 10_000,
        "DRAIN_TIMEOUT": 20,
        "EAGER": False,            # run tasks inline (tests)
        "ON_COMMIT": True,         # enqueue inside atomic() waits for the commit
        "ON_COMMIT_DATABASE": "default",
        "CLOSE_CONNECTIONS": True, # close_old_connections() around every attempt
        "DASHBOARD_PERMISSION": None,  # who sees the staff dashboard: None = is_staff
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._config import RunnerSettings
from ..._errors import ConfigurationError

RUNNER_KEYS = {name.upper(): name for name in RunnerSettings.names()}
APP_DEFAULTS: dict[str, Any] = {
    "ON_COMMIT": True,
    "ON_COMMIT_DATABASE": "default",
    "CLOSE_CONNECTIONS": True,
    "DASHBOARD_PERMISSION": None,
}


@dataclass(frozen=True)
class OffloadSettings:
    runner_options: dict[str, Any]  # validated keyword arguments for offload.configure()
    on_commit: bool
    on_commit_database: str
    close_connections: bool
    dashboard_permission: str | None


def load(raw: object, where: str = "settings.OFFLOAD") -> OffloadSettings:
    """Validate ``raw`` (the ``OFFLOAD`` dict); errors name the key and what is wrong."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where} must be a dict, got {type(raw).__name__}: {raw!r}")
    unknown = sorted(str(key) for key in raw if key not in RUNNER_KEYS and key not in APP_DEFAULTS)
    if unknown:
        allowed = ", ".join([*RUNNER_KEYS, *APP_DEFAULTS])
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {allowed}")
    options = {RUNNER_KEYS[key]: value for key, value in raw.items() if key in RUNNER_KEYS}
    try:
        RunnerSettings().replace(**options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    app = {**APP_DEFAULTS, **{key: value for key, value in raw.items() if key in APP_DEFAULTS}}
    for key in ("ON_COMMIT", "CLOSE_CONNECTIONS"):
        if not isinstance(app[key], bool):
            raise ConfigurationError(f"{where}[{key!r}] must be True or False, got {app[key]!r}")
    if not isinstance(app["ON_COMMIT_DATABASE"], str) or not app["ON_COMMIT_DATABASE"]:
        raise ConfigurationError(
            f"{where}['ON_COMMIT_DATABASE'] must be a database alias, got {app['ON_COMMIT_DATABASE']!r}"
        )
    permission = app["DASHBOARD_PERMISSION"]
    if permission is not None and (not isinstance(permission, str) or permission.count(".") != 1):
        raise ConfigurationError(
            f"{where}['DASHBOARD_PERMISSION'] must be None or 'app_label.codename', got {permission!r}"
        )
    return OffloadSettings(
        runner_options=options,
        on_commit=app["ON_COMMIT"],
        on_commit_database=app["ON_COMMIT_DATABASE"],
        close_connections=app["CLOSE_CONNECTIONS"],
        dashboard_permission=permission,
    )
