"""The ``offload`` logger tree.

``offload.runner`` reports the runner's life (timeouts, abandoned threads, hooks
that raise, the drain and dropped work), ``offload.task``
one line per attempt outcome. Both propagate to ``offload``. No handler is
attached here on purpose: with no logging configured, Python's last-resort
handler still prints warnings and errors to stderr, so failures never vanish.
"""

from __future__ import annotations

import logging

log = logging.getLogger("offload")
runner_log = logging.getLogger("offload.runner")
task_log = logging.getLogger("offload.task")
