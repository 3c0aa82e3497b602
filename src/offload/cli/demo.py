"""``offload demo``: a scripted scenario shaped like web post-processing."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run a live demo of a few hundred tasks", description=__doc__)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print("demo: not written yet")
    return 0
