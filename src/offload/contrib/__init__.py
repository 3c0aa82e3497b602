"""Integrations with web frameworks. Each one needs its extra, e.g. ``offload[django]``."""
