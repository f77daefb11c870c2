"""The status page: the dashboard of every check and each check's own page, server-rendered.

Everything a pinger or a person typed reaches the page through jinja's autoescaping; the only
markup built here is the SVG of the run strip and the charts, from numbers and fixed words
(escaped all the same).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from heartbeatd.core.durations import format_duration, format_elapsed
from heartbeatd.core.errors import plain_errors
from heartbeatd.core.model import (
    Check,
    Status,
    counting,
    late_at,
    run_example,
    status_at,
    unique_key,
)
from heartbeatd.core.rules import CheckRules
from heartbeatd.core.rules.assertions import Percentile, show_all
from heartbeatd.core.schedule import in_words, upcoming, zone
from heartbeatd.core.silence import Hold, holding, on_at, strongest
from heartbeatd.store import PingRecord
from heartbeatd.web import badges
from heartbeatd.web.keys import CLOCK, CONFIG, STORE, TEMPLATES
from heartbeatd.web.ui.auth import User, reader, sees_secrets

routes = web.RouteTableDef()

ORDER = {"down": 0, "late": 1, "started": 2, "up": 3, "new": 4, "paused": 5}
STATUSES = tuple(ORDER)
UUID_PATH = "{uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}}"
# a check page by its UUID or by its unique_key, which is what links use: a page address ends
# up in proxy logs, browser history and Referer headers, and a UUID there is a ping URL
KEY_PATH = "{key:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{40}}"
STRIP_RUNS = 30
BODY_PREVIEW = 120


@dataclass(frozen=True, slots=True)
class Moment:
    """A time as the page shows it: relative in the text, exact on hover."""

    iso: str
    exact: str
    relative: str


def moment(at: float | None, now: float) -> Moment | None:
    if at is None:
        return None
    return Moment(iso_time(at), exact_time(at), relative_time(at, now))


def exact_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def iso_time(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def relative_time(at: float, now: float) -> str:
    ago = now - at
    return f"{span(ago)} ago" if ago >= 0 else f"in {span(-ago)}"


SPANS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def span(seconds: float) -> str:
    """A span to its largest unit and the next ('3h 20m', '2d'): like format_elapsed, but
    a fixed few steps, as a dashboard of 1,000 checks spells 2,000 of them per poll."""
    whole = round(seconds)
    for (unit, size), (small, small_size) in pairwise(SPANS):
        if whole >= size:
            count, rest = divmod(whole, size)
            rest //= small_size
            return f"{count}{unit} {rest}{small}" if rest else f"{count}{unit}"
    return f"{whole}s"


def shown_status(check: Check, now: float) -> str:
    """The word a person sees: the derived `grace` reads "late"."""
    status = status_at(check, now)
    return "late" if status == Status.GRACE else str(status)


def next_expected(check: Check, status: str) -> float | None:
    """When the next ping is due: a started run's deadline, else the schedule's next slot."""
    if status == "started" and check.last_start is not None:
        return check.last_start + check.runtime_limit
    return late_at(check)


@lru_cache(maxsize=4096)
def run_strip(codes: str) -> Markup:
    """The last runs as coloured bars, oldest left; grey where there is no run yet.

    One stroked path per colour keeps it small: a dashboard of 1,000 checks is polled whole.
    """
    slots = "-" * (STRIP_RUNS - len(codes)) + codes[-STRIP_RUNS:]
    paths = []
    for code, kind in (("0", "ok"), ("1", "failed"), ("-", "none")):
        bars = "".join(f"M{i * 7 + 2.5:g} 0v16" for i, c in enumerate(slots) if c == code)
        if bars:
            paths.append(f'<path class="run-{kind}" d="{bars}"/>')
    ok, failed = codes.count("0"), codes.count("1")
    runs = "run" if len(codes) == 1 else "runs"
    label = f"last {len(codes)} {runs}: {ok} succeeded, {failed} failed" if codes else "no runs yet"
    width = STRIP_RUNS * 7 - 2
    return Markup(
        f'<svg class="strip" viewBox="0 0 {width} 16" width="{width}" height="16" role="img" '
        f'aria-label="{label}"><title>{label}</title>{"".join(paths)}</svg>'
    )


schedule_words = lru_cache(maxsize=4096)(in_words)  # cron's explain() is slow; schedules repeat
link_key = lru_cache(maxsize=65536)(unique_key)  # a sha1 per row per poll adds up


@dataclass(frozen=True, slots=True)
class Row:
    """What a dashboard row shows but its relative times, which change every second."""

    uuid: str
    key: str  # the unique_key the row links by
    name: str
    tags: tuple[str, ...]
    status: str
    counting: str  # "1 of 3 failures": a threshold counting towards a change of status
    schedule: str
    last_ping: float | None
    next_expected: float | None
    last_duration: str
    strip: Markup
    silenced: str = ""  # the silence holding its alerts, and until when

    def html(self, templates: jinja2.Environment, now: float) -> Markup:
        """The row with its relative times put into the slots of its cached rendering."""
        parts = _row_parts(self, templates)
        if len(parts) == 1:
            return Markup(parts[0])
        times = [relative_time(t, now) for t in (self.last_ping, self.next_expected) if t]
        pieces = [parts[0]]
        for text, part in zip(times, parts[1:], strict=True):
            pieces += (text, part)
        return Markup("".join(pieces))


SLOT = Markup("<slot/>")  # escaped text can never contain "<", so this splits only slots


RENDERED_LIMIT = 20_000  # rows kept rendered; past it the cache starts afresh
_rendered: dict[str, tuple[Row, jinja2.Environment, list[str]]] = {}


def _row_parts(row: Row, templates: jinja2.Environment) -> list[str]:
    """A row rendered once per change of what it shows: the dashboard of 1,000 checks is
    polled every few seconds, and rendering every row each time would cost most of it.
    Kept by check, not by row, so a check pinged every minute holds one rendering, not one
    per ping (an lru_cache keyed by the row grew the daemon by megabytes a minute)."""
    kept = _rendered.get(row.uuid)
    if kept is not None and kept[0] == row and kept[1] is templates:
        return kept[2]
    if len(_rendered) >= RENDERED_LIMIT:
        _rendered.clear()
    html = templates.get_template("_row.html").render(
        r=row, slot=SLOT, exact_time=exact_time, iso_time=iso_time
    )
    parts = html.split(SLOT)
    _rendered[row.uuid] = (row, templates, parts)
    return parts


def held_text(hold: Hold | None) -> str:
    """ "Sunday patching until 2026-12-06 05:00 UTC": what the page says of a silence."""
    return f"{hold.name} until {exact_time(hold.until)}" if hold else ""


def dashboard_row(check: Check, now: float, runs: str, hold: Hold | None = None) -> Row:
    status = shown_status(check, now)
    return Row(
        uuid=check.uuid,
        key=link_key(check.uuid),
        name=check.name,
        tags=tuple(check.tags.split()),
        status=status,
        counting=counting(check, now),
        schedule=schedule_words(check.schedule),
        last_ping=check.last_ping,
        next_expected=next_expected(check, status),
        last_duration=format_elapsed(check.last_duration) if check.last_duration else "",
        strip=run_strip(runs),
        silenced=held_text(hold),
    )


def render(
    request: web.Request, template: str, http_status: int = 200, **context: Any
) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(**context)
    return web.Response(
        text=html,
        status=http_status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/")
@plain_errors
async def dashboard(request: web.Request) -> web.Response:
    """Every check, down first; `?status=` and `?tag=` filter, `?partial=rows` is the poll."""
    user = await reader(request)
    app = request.app
    now = app[CLOCK].now()
    store = app[STORE]
    checks = await store.list_checks()
    runs = await store.recent_runs(STRIP_RUNS)
    windows, snoozes = on_at(store.silences, now), await store.snoozes(now)
    rows = [
        dashboard_row(c, now, runs.get(c.id, ""), strongest(c, now, windows, snoozes.get(c.id)))
        for c in checks
    ]
    status, tag = request.query.get("status", ""), request.query.get("tag", "")
    shown = [r for r in rows if (not status or r.status == status) and (not tag or tag in r.tags)]
    shown.sort(key=lambda r: (ORDER[r.status], r.name.lower()))
    counts = Counter(r.status for r in rows)
    html = [r.html(app[TEMPLATES], now) for r in shown]
    if request.query.get("partial") == "rows":
        response = render(request, "_rows.html", rows=html, total=len(rows))
        response.headers["X-Down-Count"] = str(counts["down"])  # the poll updates the title
        return response
    tags = sorted({t for r in rows for t in r.tags})
    secret = await store.badge_secret() if user and user.admin else ""
    return render(
        request,
        "dashboard.html",
        user=user,
        rows=html,
        total=len(rows),
        counts=counts,
        statuses=STATUSES,
        tags=tags,
        status=status,
        tag=tag,
        badges={t: badges.badge_urls(secret, t or None) for t in ["", *tags]} if secret else {},
    )


@routes.get(f"/checks/{KEY_PATH}")
@plain_errors
async def check_page(request: web.Request) -> web.Response:
    user = await reader(request)
    check = await request.app[STORE].check_by_key(request.match_info["key"])
    return await check_page_response(request, user, check)


async def check_page_response(
    request: web.Request, user: User | None, check: Check, message: str = ""
) -> web.Response:
    """The check page, with `message` (the outcome of an action) at the top."""
    app = request.app
    store = app[STORE]
    now = app[CLOCK].now()
    records = await store.pings(check.id, 100)
    pings = [ping_row(p, now) for p in records]
    flips = [{**f, "at": moment(f["at"], now)} for f in await store.flips(check.id, 50)]
    notes = [
        {**n, "at": moment(n["at"], now), "sent_at": moment(n["sent_at"], now),
         "next_attempt": moment(n["next_attempt"], now)}
        for n in await store.outbox(50, check.id)
    ]  # fmt: skip
    site = app[CONFIG].site_url
    metric = main_metric(check.rules, records)
    snooze = (await store.snoozes(now)).get(check.id)
    hold = holding(check, now, store.silences, snooze)
    shown = sees_secrets(request, user)
    secret = await store.badge_secret() if shown else ""
    return render(
        request,
        "check.html",
        user=user,
        check=check,
        status=shown_status(check, now),
        counting=counting(check, now),
        schedule=in_words(check.schedule),
        grace=format_duration(check.grace),
        last_ping=moment(check.last_ping, now),
        pings=pings,
        flips=flips,
        notes=notes,
        chart=duration_chart(records, check.rules),
        metric=metric,
        metric_chart=metric_chart(metric, records, check.rules) if metric else None,
        rules=check.rules.describe(),
        upcoming=expected_times(check, now),
        secrets=shown,
        ping_url=f"{site}/ping/{check.uuid}" if shown else "",
        examples=examples(check, site) if shown else {},
        badges=badges.check_badge_urls(secret, check) if shown else {},
        site_url=site,
        message=message,
        silenced=held_text(hold),
    )


def ping_row(ping: PingRecord, now: float) -> dict[str, Any]:
    body = (ping["body"] or b"").decode("utf-8", "replace")
    first_line = body.split("\n", 1)[0]
    short = first_line[:BODY_PREVIEW]
    return {
        **ping,
        "at": moment(ping["created"], now),
        "body": body,
        "preview": short,
        "more": len(body) > len(short),
        "kept": len(ping["body"] or b""),
        "truncated": ping["body_size"] > len(ping["body"] or b""),
        "metrics_text": show_all(ping["metrics"]),
    }


def expected_times(check: Check, now: float) -> list[str]:
    """The next 5 expected pings in the check's own zone, spelled with the offset in force
    then (so a DST change shows as CET → CEST)."""
    if check.status == Status.PAUSED:
        return []
    tz = zone(check.tz)
    after = now
    if check.period and check.last_ping is not None and check.last_ping + check.period >= now:
        after = check.last_ping
    return [
        datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M %Z")
        for t in upcoming(replace(check.schedule, early=0.0), after, 5)  # `now` is no ping
    ]


CHART_HEIGHT, CHART_GUTTER, CHART_STEP = 80, 40, 8  # the gutter holds the scale's labels
Bar = tuple[float, bool]  # a value, and whether its ping was a failure


def bar_chart(
    bars: Sequence[Bar],
    show: Callable[[float], str],
    label: str,
    bounds: Sequence[tuple[float, str]],
) -> Markup:
    """Bars oldest left on one scale from 0 (down to the lowest value when one is negative),
    each constant bound drawn across it: a person sees how close the runs come to an assertion.
    """
    values = [value for value, _ in bars] + [bound for bound, _ in bounds]
    top, bottom = max(0, *values), min(0, *values)
    plot = CHART_HEIGHT - 14  # the top label's room
    scale = plot / ((top - bottom) or 1)

    def y(value: float) -> float:
        return CHART_HEIGHT - (value - bottom) * scale

    width = CHART_GUTTER + len(bars) * CHART_STEP
    shapes = []
    for i, (value, failed) in enumerate(bars):
        upper, lower = y(max(value, 0)), y(min(value, 0))
        h = max(lower - upper, 1)
        shapes.append(
            f'<rect class="run-{"failed" if failed else "ok"}" x="{CHART_GUTTER + i * CHART_STEP}" '
            f'y="{lower - h:.1f}" width="6" height="{h:.1f}"><title>{escape(show(value))}'
            "</title></rect>"
        )
    for bound, text in bounds:
        shapes.append(
            f'<line class="bound" x1="{CHART_GUTTER}" x2="{width}" y1="{y(bound):.1f}" '
            f'y2="{y(bound):.1f}" stroke="currentColor" stroke-dasharray="4 3"><title>'
            f"{escape(text)}</title></line>"
        )
    low = escape(show(bottom)) if bottom else "0"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {CHART_HEIGHT}" width="{width}" '
        f'height="{CHART_HEIGHT}" role="img" aria-label="{escape(label)}"><text x="0" y="10" '
        f'class="axis">{escape(show(top))}</text><text x="0" y="{CHART_HEIGHT}" class="axis">'
        f"{low}</text>{''.join(shapes)}</svg>"
    )


def constant_bounds(rules: CheckRules, metric: str) -> list[tuple[float, str]]:
    """The metric's assertions with a fixed number to draw; a percentile moves, so is not."""
    return [
        (a.bound, str(a))
        for a in rules.assertions
        if a.metric == metric and not isinstance(a.bound, Percentile)
    ]


def duration_chart(pings: Sequence[PingRecord], rules: CheckRules) -> Markup | None:
    """Bars of the run durations in the ping log, oldest left; None with no timed runs."""
    runs = [
        (p["duration"], p["kind"] == "fail") for p in reversed(pings) if p["duration"] is not None
    ]
    if not runs:
        return None
    longest = format_elapsed(max(d for d, _ in runs))
    label = f"durations of the last {len(runs)} runs; longest {longest}"
    return bar_chart(runs, format_elapsed, label, constant_bounds(rules, "duration"))


def main_metric(rules: CheckRules, pings: Sequence[PingRecord]) -> str | None:
    """The metric the check is about: the first its assertions name, else the one its recent
    pings carry most. Never `duration`, which has its own chart."""
    for assertion in rules.assertions:
        if assertion.metric != "duration":
            return assertion.metric
    carried = Counter(name for p in pings for name in p["metrics"] if name != "duration")
    return carried.most_common(1)[0][0] if carried else None


def metric_chart(metric: str, pings: Sequence[PingRecord], rules: CheckRules) -> Markup | None:
    """Bars of one metric in the pings that carried it, oldest left; None if none did."""
    points = [
        (p["metrics"][metric], p["kind"] == "fail")
        for p in reversed(pings)
        if metric in p["metrics"]
    ]
    if not points:
        return None
    highest = compact(max(v for v, _ in points))
    label = f"{metric} in the last {len(points)} pings that reported it; highest {highest}"
    return bar_chart(points, compact, label, constant_bounds(rules, metric))


def compact(value: float) -> str:
    """A number short enough for the chart's gutter (5.2e+09); the ping log shows it whole."""
    return f"{value:.3g}" if abs(value) >= 1e6 else f"{value:g}"


def examples(check: Check, site: str) -> dict[str, str]:
    """Ready-to-paste ways to ping this check from the clients people already use."""
    url = f"{site}/ping/{check.uuid}"
    curl = "curl -fsS -m 10 --retry 5 -o /dev/null"
    scheduler, line = run_example(check, f"/path/to/job && {curl} {url}")
    return {
        scheduler: line,
        "start and exit status": (f"{curl} {url}/start\n/path/to/job\n{curl} {url}/$?"),
        "runitor": f"HC_API_URL={site}/ping runitor -uuid {check.uuid} -- /path/to/job",
        "borgmatic": f"healthchecks:\n    ping_url: {url}",
    }
