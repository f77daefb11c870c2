"""/metrics: every check and the daemon itself in Prometheus' text exposition format (0.0.4).

Written by hand: a family is a HELP line, a TYPE line and its samples, and label values need
three escapes, so prometheus-client would bring a dependency and a global registry for a page
of code. Checks are labelled by name, slug and tags, never by UUID: the UUID is the secret of
a check's ping URL. /metrics answers who presents `metrics_key`, or without one a local
scraper (exposure.py), or anyone when `metrics_public = true`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from aiohttp import web

from heartbeatd.core.model import Check, Status, status_at
from heartbeatd.web.exposure import is_local
from heartbeatd.web.keys import CLOCK, CONFIG, DISPATCHER, MONITOR, STORE

routes = web.RouteTableDef()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PING_KINDS = ("success", "start", "fail", "log")
STATUSES = tuple(Status)
RESULTS = ("sent", "failed")


class Stats:
    """What the daemon counts in memory since it started; the ping path pays one dict
    increment for it."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.pings: Counter[str] = Counter()


STATS = web.AppKey("stats", Stats)


def escape(value: str) -> str:
    """A label value as the exposition format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, labels: str = "") -> None:
        """`labels` as label_text() wrote them: a check's are escaped once, not per sample."""
        series = f"{name}{{{labels}}}" if labels else name
        self.lines.append(f"{series} {number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def label_text(labels: Mapping[str, str]) -> str:
    return ",".join(f'{key}="{escape(text)}"' for key, text in labels.items())


def check_labels(check: Check) -> str:
    return label_text({"name": check.name, "slug": check.slug, "tags": check.tags})


def render_all_checks(
    checks: Sequence[Check], last: Mapping[int, Mapping[str, float]], now: float
) -> list[str]:
    """Every per-check family: 100,000 lines for 10,000 checks, about 0.2 s of CPU. Run in a
    thread so the scrape is not one 0.2 s stall of every ping (the checks are a snapshot)."""
    labelled = [(check, check_labels(check)) for check in checks]
    out = Exposition()
    render_checks(out, labelled, now)
    render_check_metrics(out, labelled, last)
    return out.lines


def render_checks(out: Exposition, labelled: Iterable[tuple[Check, str]], now: float) -> None:
    """Per-check families and the totals by status, each status read as a person would see it
    now (model.status_at): a check past its deadline is down here before the wheel fires."""
    seen = [(check, status_at(check, now), labels) for check, labels in labelled]
    out.family(
        "heartbeatd_check_status",
        "gauge",
        "1 for the status each check is in now, 0 for the others (grace is shown as late).",
    )
    for _, status, labels in seen:
        for candidate in STATUSES:
            shown = f'{labels},status="{candidate.value}"'
            out.sample("heartbeatd_check_status", int(candidate is status), shown)
    out.family(
        "heartbeatd_check_last_ping_age_seconds",
        "gauge",
        "Seconds since the check's last success or failure ping; absent before the first.",
    )
    for check, _, labels in seen:
        if check.last_ping is not None:
            age = max(now - check.last_ping, 0.0)
            out.sample("heartbeatd_check_last_ping_age_seconds", age, labels)
    out.family(
        "heartbeatd_check_last_duration_seconds",
        "gauge",
        "How long the check's last finished run took; absent when no run was timed.",
    )
    for check, _, labels in seen:
        if check.last_duration is not None:
            out.sample("heartbeatd_check_last_duration_seconds", check.last_duration, labels)
    totals = Counter(status for _, status, _ in seen)
    out.family("heartbeatd_checks", "gauge", "Checks by their status now.")
    for candidate in Status:
        out.sample("heartbeatd_checks", totals[candidate], f'status="{candidate.value}"')


def render_check_metrics(
    out: Exposition,
    labelled: Iterable[tuple[Check, str]],
    last: Mapping[int, Mapping[str, float]],
) -> None:
    """The numbers jobs report in their pings (`?bytes=5.2e9`), the latest of each, so a
    dashboard can graph them and an alert rule can watch them beside heartbeatd's own."""
    out.family(
        "heartbeatd_check_metric",
        "gauge",
        "The last value of each metric a check's pings carried (?bytes=5.2e9), by metric.",
    )
    for check, labels in labelled:
        reported = last.get(check.id)
        if reported:
            for metric, value in sorted(reported.items()):
                shown = f'{labels},metric="{escape(metric)}"'
                out.sample("heartbeatd_check_metric", value, shown)


def render_daemon(
    out: Exposition,
    stats: Stats,
    attempts: Mapping[str, int],
    outbox_depth: int,
    wheel_size: int,
) -> None:
    out.family(
        "heartbeatd_pings_received_total",
        "counter",
        "Pings recorded since the daemon started, by the kind their URL gave.",
    )
    for kind in sorted({*PING_KINDS, *stats.pings}):
        out.sample("heartbeatd_pings_received_total", stats.pings[kind], f'kind="{kind}"')
    out.family(
        "heartbeatd_notifications_total",
        "counter",
        "Notification delivery attempts since the daemon started, by result.",
    )
    for result in RESULTS:
        out.sample("heartbeatd_notifications_total", attempts.get(result, 0), f'result="{result}"')
    out.family("heartbeatd_outbox_depth", "gauge", "Notifications waiting to be delivered.")
    out.sample("heartbeatd_outbox_depth", outbox_depth)
    out.family("heartbeatd_wheel_size", "gauge", "Checks the timer wheel is watching.")
    out.sample("heartbeatd_wheel_size", wheel_size)
    out.family("heartbeatd_up", "gauge", "1 while the daemon answers.")
    out.sample("heartbeatd_up", 1)
    out.family(
        "heartbeatd_start_time_seconds", "gauge", "When the daemon started, in epoch seconds."
    )
    out.sample("heartbeatd_start_time_seconds", stats.started)


def may_scrape(request: web.Request) -> bool:
    """With `metrics_key`, who presents it; without, a local scraper, or anyone if
    `metrics_public`: the metrics name every check, its tags and its status."""
    config = request.app[CONFIG]
    if config.metrics_key:
        return authorized(request, config.metrics_key)
    return config.metrics_public or is_local(request)


def authorized(request: web.Request, key: str) -> bool:
    """`Authorization: Bearer <key>` or `?key=<key>`, compared in constant time."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        given = request.query.get("key", "")
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), key.encode())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    if not may_scrape(request):
        return web.Response(
            status=401,
            text="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="heartbeatd metrics"'},
        )
    checks = await app[STORE].list_checks()
    depth = await app[STORE].outbox_depth()
    last = await app[STORE].last_metrics()
    lines = await asyncio.to_thread(render_all_checks, checks, last, app[CLOCK].now())
    out = Exposition()  # the daemon's counters are read here, in the loop that changes them
    out.lines = lines
    render_daemon(out, app[STATS], app[DISPATCHER].attempts, depth, len(app[MONITOR]))
    return web.Response(body=out.text().encode(), headers={"Content-Type": CONTENT_TYPE})
