"""Test support: a fake clock, eager runners and a pytest plugin.

- :class:`FakeClock` — time that only moves when the test says so.
- :func:`eager` — a context manager making the default runner run tasks inline.
- :func:`use_runner` — make a runner the default one for a block.
- The pytest plugin (loaded automatically when offload is installed) provides the
  ``runner`` and ``fake_clock`` fixtures; see ``offload.testing.pytest_plugin``.
"""

from ._clock import FakeClock
from ._helpers import eager, use_runner

__all__ = ["FakeClock", "eager", "use_runner"]
