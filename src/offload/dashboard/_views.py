"""The HTML pages: overview, task list, task detail, task names, running tasks, login."""

from __future__ import annotations

from urllib.parse import urlencode

from .._handle import State
from ._html import Markup, bar_chart, esc, fmt_duration, fmt_rate, fmt_time, join, table, tag
from ._http import HTTPError, Request
from ._model import Overview, RunningTask, TaskSummary
from ._query import task_query
from ._source import Source


class Context:
    """What every page needs besides the source: mount prefix, CSRF token, whether actions show."""

    def __init__(self, request: Request, *, csrf: str, actions: bool) -> None:
        self.request = request
        self.prefix = request.script_name
        self.csrf = csrf
        self.actions = actions

    def link(self, path: str, text: object, **query: object) -> Markup:
        params = {k: v for k, v in query.items() if v not in (None, "")}
        href = self.prefix + path + ("?" + urlencode(params) if params else "")
        return tag("a", text, href=href)

    def task_link(self, task_id: str) -> Markup:
        return self.link(f"/tasks/{task_id}", task_id)

    def action(self, path: str, label: str, cls: str = "") -> Markup:
        """A POST form with the CSRF token; shown only when actions are enabled."""
        if not self.actions:
            return Markup("")
        return Markup(
            f'<form method="post" action="{esc(self.prefix + path)}" class="action">'
            f'<input type="hidden" name="csrf" value="{esc(self.csrf)}">'
            f'<button type="submit" class="{esc(cls)}">{esc(label)}</button></form>'
        )


def _stat(label: str, value: object, field: str, cls: str = "") -> Markup:
    return Markup(
        f'<div class="stat {esc(cls)}"><span class="value" data-field="{esc(field)}">{esc(value)}</span>'
        f'<span class="label">{esc(label)}</span></div>'
    )


def overview(source: Source, ctx: Context) -> tuple[str, Markup]:
    o = source.overview()
    counts = join(
        _stat(state.value, o.counts.get(state.value, 0), f"counts.{state.value}", state.value) for state in State
    )
    pool = join(
        [
            _stat("queue depth", f"{o.queue_depth} / {o.queue_size}", "queue_depth"),
            _stat("busy workers", o.busy, "busy"),
            _stat("idle workers", o.idle, "idle"),
            _stat("threads / max", f"{o.threads} / {o.workers}", "threads"),
            _stat("abandoned threads", o.abandoned_threads, "abandoned_threads", "warn" if o.abandoned_threads else ""),
            _stat("oldest queued", fmt_duration(o.oldest_queued_age), "oldest_queued_age"),
            _stat("retries", o.retries, "retries"),
            _stat("run time p50 / p99", f"{fmt_duration(o.run_time_p50)} / {fmt_duration(o.run_time_p99)}", "run_time"),
        ]
    )
    return "Overview", Markup(
        f'<h1>Overview</h1><section class="stats" aria-label="tasks per state">{counts}</section>'
        f'<section class="stats" aria-label="pool">{pool}</section>{_charts(o)}'
    )


def _charts(o: Overview) -> Markup:
    minutes = len(o.series) * o.bucket_seconds / 60
    finished = [b.succeeded + b.failed for b in o.series]
    rates = [b.failed / (b.succeeded + b.failed) if b.succeeded + b.failed else 0.0 for b in o.series]
    per = f"{o.bucket_seconds:g} s"
    return Markup(
        '<section class="charts">'
        f"<figure>{bar_chart('finished tasks per bucket', finished, ['bar'] * len(finished))}"
        f"<figcaption>Throughput: finished tasks per {esc(per)}, last {minutes:g} min "
        f"(total {sum(finished)})</figcaption></figure>"
        f"<figure>{bar_chart('failure rate per bucket', rates, ['bar fail'] * len(rates), maximum=1.0)}"
        f"<figcaption>Failure rate per {esc(per)} (failed / finished), last {minutes:g} min</figcaption></figure>"
        "</section>"
    )


def _task_row(ctx: Context, t: TaskSummary) -> list[object]:
    error = "" if t.error_type is None else f"{t.error_type.rsplit('.', 1)[-1]}: {t.error_message}"
    return [
        ctx.task_link(t.id),
        ctx.link("/tasks", t.name, name=t.name),
        t.queue,
        tag("span", t.state, class_=f"state {t.state}"),
        t.attempts,
        fmt_time(t.created_at),
        fmt_time(t.finished_at),
        tag("span", error[:200], class_="error") if error else "",
    ]


def tasks(source: Source, ctx: Context) -> tuple[str, Markup]:
    request = ctx.request
    query = task_query(request.query)
    page = source.tasks(query)
    current = {
        "state": "" if query.state is None else query.state.value,
        "name": query.name or "",
        "queue": query.queue or "",
        "since": request.query.get("since", ""),
        "until": request.query.get("until", ""),
        "limit": str(query.limit),
    }
    options = join(
        tag("option", label or "any state", value=value, selected=value == current["state"])
        for value, label in [("", ""), *((s.value, s.value) for s in State)]
    )
    form = Markup(
        f'<form method="get" action="{esc(ctx.prefix)}/tasks" class="filters">'
        f'<label>state <select name="state">{options}</select></label>'
        f'<label>name <input name="name" value="{esc(current["name"])}"></label>'
        f'<label>queue <input name="queue" value="{esc(current["queue"])}"></label>'
        f'<label>since <input name="since" value="{esc(current["since"])}" placeholder="ISO time or epoch s"></label>'
        f'<label>until <input name="until" value="{esc(current["until"])}" placeholder="ISO time or epoch s"></label>'
        f'<input type="hidden" name="limit" value="{esc(current["limit"])}">'
        '<button type="submit">Filter</button></form>'
    )
    rows = table(
        ["id", "name", "queue", "state", "attempts", "created", "finished", "error"],
        (_task_row(ctx, t) for t in page.tasks),
        "No task matches.",
        class_="tasks",
    )
    first, last = page.offset + 1, page.offset + len(page.tasks)
    nav = []
    if page.offset > 0:
        nav.append(ctx.link("/tasks", "« newer", **{**current, "offset": max(0, page.offset - page.limit)}))
    if last < page.total:
        nav.append(ctx.link("/tasks", "older »", **{**current, "offset": page.offset + page.limit}))
    shown = f"{first} to {last} of {page.total}" if page.tasks else f"0 of {page.total}"
    purge = ctx.action("/purge", "Purge finished tasks", "danger")
    return "Tasks", Markup(
        f'<h1>Tasks</h1>{form}<p class="pager"><span data-field="shown">{esc(shown)}</span> '
        f"{join(nav)}</p>{rows}{purge}"
    )


def task_detail(source: Source, ctx: Context, task_id: str) -> tuple[str, Markup]:
    detail = source.task(task_id)
    if detail is None:
        raise HTTPError(404, f"no task with id {task_id!r} (unknown, or no longer in the history)")
    t = detail.task
    facts = table(
        ["field", "value"],
        [
            ["id", t.id],
            ["name", ctx.link("/tasks", t.name, name=t.name)],
            ["state", tag("span", t.state, class_=f"state {t.state}")],
            ["queue", t.queue],
            ["priority", t.priority],
            ["attempts", t.attempts],
            ["created", fmt_time(t.created_at)],
            ["started", fmt_time(t.started_at)],
            ["finished", fmt_time(t.finished_at)],
            ["next attempt", fmt_time(t.next_attempt_at)],
            *([["cancelled because", detail.cancel_reason]] if detail.cancel_reason else []),
            *([["reason", detail.reason]] if detail.reason and detail.reason != detail.cancel_reason else []),
            *([["process", detail.owner]] if detail.owner else []),
        ],
        "",
        class_="facts",
    )
    if detail.args is None or detail.kwargs is None:
        arguments = tag("p", "Arguments are not kept once a task succeeded or was cancelled.", class_="empty")
    else:
        arguments = table(
            ["argument", "value"],
            [
                *([f"args[{i}]", tag("code", v)] for i, v in enumerate(detail.args)),
                *([k, tag("code", v)] for k, v in detail.kwargs.items()),
            ],
            "No arguments.",
            class_="args",
        )
    error = Markup("")
    if detail.error is not None:
        e = detail.error
        error = Markup(f"<h2>Error</h2>{tag('p', f'{e.type}: {e.message}', class_='error')}{tag('pre', e.traceback)}")
    attempts = table(
        ["#", "started", "finished", "duration", "outcome", "error"],
        (
            [
                a.number,
                fmt_time(a.started_at),
                fmt_time(a.finished_at),
                fmt_duration(a.duration),
                tag("span", a.outcome, class_=f"state {a.outcome}"),
                ""
                if a.error is None
                else Markup(
                    f"<details><summary>{esc(a.error.type)}: {esc(a.error.message[:200])}</summary>"
                    f"{tag('pre', a.error.traceback)}</details>"
                ),
            ]
            for a in detail.attempt_records
        ),
        _no_attempts(t),
        class_="attempts",
    )
    stack = Markup("") if detail.stack is None else Markup(f"<h2>Current stack</h2>{tag('pre', detail.stack)}")
    actions = join(
        [
            ctx.action(f"/tasks/{t.id}/retry", "Retry") if detail.can_retry else "",
            ctx.action(f"/tasks/{t.id}/cancel", "Cancel", "danger") if detail.can_cancel else "",
        ]
    )
    return f"Task {t.name}", Markup(
        f"<h1>Task {esc(t.name)}</h1>{actions}{facts}<h2>Arguments</h2>{arguments}{error}"
        f"<h2>Attempts</h2>{attempts}{stack}"
    )


def _no_attempts(t: TaskSummary) -> str:
    """What an empty attempt table means: none finished, or a source that keeps no per-attempt records."""
    if t.attempts == 0 or (t.state == State.RUNNING.value and t.attempts == 1):
        return "No attempt has finished yet."
    return (
        f"{t.attempts} attempt(s) started. This source keeps no per-attempt records "
        "(a journal keeps the count, the first start, the end and the last error)."
    )


def names(source: Source, ctx: Context) -> tuple[str, Markup]:
    rows = (
        [
            ctx.link("/tasks", n.name, name=n.name),
            n.count,
            n.active,
            n.succeeded,
            n.failed,
            n.cancelled,
            fmt_rate(n.failure_rate),
            fmt_duration(n.duration_p50),
            fmt_duration(n.duration_p95),
            ""
            if n.last_failure_id is None
            else Markup(f"{ctx.task_link(n.last_failure_id)} {esc(fmt_time(n.last_failure_at))}"),
            tag("span", (n.last_error or "")[:200], class_="error"),
        ]
        for n in source.names()
    )
    headers = ["name", "count", "active", "succeeded", "failed", "cancelled", "failure rate", "p50", "p95"]
    return "Task names", Markup(
        "<h1>Task names</h1>"
        + table([*headers, "last failure", "last error"], rows, "No task recorded yet.", class_="names")
    )


def running(source: Source, ctx: Context) -> tuple[str, Markup]:
    items = []
    for r in source.running():
        items.append(
            Markup(
                f'<section class="running-task"><h2>{ctx.task_link(r.id)} {esc(r.name)}</h2>'
                f"<p>attempt {esc(r.attempt)}, running for {esc(fmt_duration(r.age))} {esc(_where(r))}</p>"
                f"{tag('pre', r.stack or _no_stack(r), class_='stack')}</section>"
            )
        )
    body = join(items) if items else tag("p", "No task is running.", class_="empty")
    return "Running", Markup(f"<h1>Running tasks</h1>{body}")


def _where(r: RunningTask) -> str:
    return f"in process {r.owner}" if r.thread_id is None and r.owner else f"on thread {r.thread_id}"


def _no_stack(r: RunningTask) -> str:
    if r.thread_id is None and r.owner:
        return "(no stack: the task runs in another process; open that process's own dashboard to see it)"
    return "(stack not available)"


def login(ctx: Context, message: str = "") -> tuple[str, Markup]:
    note = tag("p", message, class_="error") if message else Markup("")
    return "Log in", Markup(
        f"<h1>Log in</h1>{note}"
        f'<form method="post" action="{esc(ctx.prefix)}/login" class="login">'
        f'<input type="hidden" name="csrf" value="{esc(ctx.csrf)}">'
        '<label>token <input type="password" name="token" autocomplete="current-password" required></label>'
        '<button type="submit">Log in</button></form>'
    )
