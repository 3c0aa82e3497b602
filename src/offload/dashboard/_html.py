"""HTML building blocks: escaping, the page layout, formatting and small SVG charts.

Every user-derived string goes through :func:`esc` (``html.escape`` with quotes)
exactly once, where it is placed; markup built here is a :class:`Markup` so it
is not escaped twice. No inline script or style anywhere: the CSP forbids them.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence

from .. import __version__


class Markup(str):
    """A string that is already safe HTML."""


def esc(value: object) -> Markup:
    """Escape a value for HTML text or a quoted attribute (``Markup`` passes through)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object]) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """``<name attrs>content</name>`` with every attribute value and the content escaped."""
    rendered = "".join(
        f" {_attr(k)}" if v is True else f' {_attr(k)}="{esc(v)}"'
        for k, v in attrs.items()
        if v is not None and v is not False
    )
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def _attr(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str, **attrs: object) -> Markup:
    head = join(tag("th", h, scope="col") for h in headers)
    body = [join(tag("td", cell) for cell in row) for row in rows]
    if not body:
        return tag("p", empty, class_="empty")
    return tag(
        "table", Markup(f"<thead><tr>{head}</tr></thead><tbody>{join(tag('tr', r) for r in body)}</tbody>"), **attrs
    )


def bar_chart(
    label: str, values: Sequence[float], classes: Sequence[str] = (), *, maximum: float | None = None
) -> Markup:
    """A small SVG bar chart (one bar per bucket); styled by the stylesheet, not inline."""
    width, height, gap = 300, 60, 1
    n = max(len(values), 1)
    top = maximum if maximum is not None else max([*values, 1e-9])
    bar = width / n
    bars = []
    for i, value in enumerate(values):
        h = 0.0 if top <= 0 else max(0.0, min(1.0, value / top)) * (height - 2)
        cls = classes[i] if i < len(classes) else "bar"
        bars.append(
            Markup(
                f'<rect class="{esc(cls)}" x="{i * bar:.1f}" y="{height - h:.1f}" '
                f'width="{max(bar - gap, 1):.1f}" height="{h:.1f}"><title>{esc(f"{value:g}")}</title></rect>'
            )
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(label)}">{join(bars)}</svg>'
    )


NAV = (("/", "Overview"), ("/tasks", "Tasks"), ("/names", "Task names"), ("/running", "Running"))


def page(title: str, body: Markup, *, prefix: str, current: str, source: str, csrf: str, refresh: bool = True) -> bytes:
    """The whole document around ``body``; the script re-fetches it to refresh ``<main>``."""
    nav = join(
        tag("a", label, href=prefix + path, aria_current="page" if path == current else None) for path, label in NAV
    )
    return (
        "<!doctype html>\n"
        + Markup(
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{esc(csrf)}">'
            f"<title>{esc(title)} · offload</title>"
            f'<link rel="stylesheet" href="{esc(prefix)}/static/dashboard.css">'
            f'<script src="{esc(prefix)}/static/dashboard.js" defer></script>'
            f'</head><body data-refresh="{2000 if refresh else 0}">'
            f'<header><span class="brand">offload</span><nav>{nav}</nav>'
            f'<label class="refresh"><input type="checkbox" id="auto-refresh" checked> auto-refresh</label></header>'
            f'<main id="main" data-title="{esc(title)}">{body}</main>'
            f"<footer>{esc(source)} · offload {esc(__version__)}</footer></body></html>"
        )
    ).encode()
