"""``python -m offload`` is the ``offload`` command."""

from .cli import main

raise SystemExit(main())
