"""Sentry crons: the Sentry SDKs' check-ins, and Sentry's HTTP check-in URL, as pings.

A Sentry DSN pointed at heartbeatd, `http://<ping-key>@<host>:<port>/<any number>`, makes a
job's crons instrumentation work unchanged: `sentry_sdk.crons.capture_checkin`, the
`@sentry_sdk.monitor(monitor_slug=...)` decorator, Celery beat's auto-instrumentation. The
DSN's public key is the instance's ping key, the monitor slug a check's slug (as Sentry
slugifies it), so each check-in is a slug ping, recorded by ping.accept with the same rules:
answered only once on disk, 503 when the database cannot take the write. The project id is
not looked at.

- Envelope: POST /api/<project>/envelope/, what every SDK sends. The key comes from the
  X-Sentry-Auth (or Authorization: Sentry ...) header, the `sentry_key` query parameter, or
  the envelope header's `dsn`. Only `check_in` items are read; events, transactions,
  sessions, attachments, client reports ... are stepped over by their length, unparsed, and
  the envelope is answered 200 all the same, as Sentry does: they have nowhere to go here.
- HTTP: GET|POST /api/<project>/cron/<monitor-slug>/<key>[/]?status=in_progress|ok|error
  (check_in_id, duration, environment), or a check-in as a JSON body; answered 202.

status in_progress is a start, ok a success, error a failure; check_in_id is the run id, so
a finish pairs with its start (the nil UUID, Sentry's "the latest run", pairs with a start
sent without one). A check-in's `monitor_config` creates the check, or changes it when it
says something else (see monitor_fields), through the Checks service so the timer re-arms;
a check declared in the config file is never changed by one.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from heartbeatd.core.errors import (
    BadRequest,
    Conflict,
    HeartbeatdError,
    NotFound,
    plain_errors,
)
from heartbeatd.core.limits import MAX_SLUG
from heartbeatd.core.model import Check, CheckDefinition
from heartbeatd.web.api import schema as api_schema
from heartbeatd.web.bodies import read_capped
from heartbeatd.web.declare import Want, declare
from heartbeatd.web.ingress import sensible_duration
from heartbeatd.web.keys import STORE
from heartbeatd.web.ping import SLUG_CHARS, accept, by_slug, ping_in

log = logging.getLogger("heartbeatd")
routes = web.RouteTableDef()

# An envelope is read whole, up to this: Sentry's own limit for one event (Relay's
# max_event_size). A check-in envelope is about 2 kB; a larger one carries an event or an
# attachment we would drop anyway, and the SDKs take the 413 as Sentry's, without retrying.
ENVELOPE_LIMIT = 1024 * 1024
# An envelope whose key is only in its own header (`dsn`) is read before its key can be
# checked: a stranger's costs us at most this much reading and parsing.
KEYLESS_ENVELOPE = 64 * 1024
CHECK_IN_LIMIT = 64 * 1024  # the JSON body of an HTTP check-in
MAX_ITEMS = 100  # item headers read in one envelope (an SDK sends one to three)
ACTIONS = {"in_progress": "start", "ok": "success", "error": "fail"}
# Sentry's defaults, in minutes, for what a monitor_config leaves out.
DEFAULT_MARGIN, DEFAULT_MAX_RUNTIME = 1, 30
# heartbeatd's periods are fixed lengths: a month is its longest, so a monthly job is never
# taken for missed; a year is the API's longest period.
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
                "month": 31 * 86400, "year": 365 * 86400}  # fmt: skip
# The names Sentry takes for a crontab, as cron expressions.
CRON_NAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@hourly": "0 * * * *"}  # fmt: skip
ACTOR = "sentry"  # the audit log's actor for a check made or changed by a check-in
# Config-file checks whose monitor_config was ignored: said once in the log, not every run.
MANAGED_NOTED = web.AppKey("sentry_managed_noted", set[str])


@dataclass(frozen=True, slots=True)
class CheckIn:
    slug: str
    action: str  # start, success, fail
    rid: str | None
    duration: float | None  # seconds, as the client measured the run
    config: Mapping[str, Any] | None  # monitor_config, unread


class TooLarge(HeartbeatdError):
    status = 413


# -- reading what the SDKs send: pure ----------------------------------------------------------


def header_key(value: str) -> str | None:
    """sentry_key from `Sentry sentry_key=..., sentry_version=7, ...` (X-Sentry-Auth)."""
    scheme, _, params = value.strip().partition(" ")
    if scheme.lower() != "sentry":
        return None
    for param in params.split(","):
        name, _, given = param.strip().partition("=")
        if name == "sentry_key":
            return given.strip()
    return None


def request_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries outside its body, where Sentry looks for it."""
    for name in ("X-Sentry-Auth", "Authorization"):
        key = header_key(headers.get(name, ""))
        if key is not None:
            return key
    return query.get("sentry_key")


def dsn_key(dsn: object) -> str | None:
    """The public key of a DSN, `http://<key>@host/1`, as an envelope header may carry it."""
    if not isinstance(dsn, str):
        return None
    try:
        return urlsplit(dsn).username
    except ValueError:
        return None


def envelope_header(data: bytes) -> tuple[dict[str, Any], int]:
    """An envelope's header (its first line) and where its items begin; ValueError if the
    header is not a JSON object."""
    line, at = _line(data, 0)
    header = _json(line)
    if not isinstance(header, dict):
        raise ValueError("the envelope header is not a JSON object")
    return header, at


def check_in_payloads(data: bytes, at: int) -> list[object]:
    """The JSON of each `check_in` item from `at` on (None for one that is not JSON).

    Each item is a header line, `{"type": ..., "length": N}`, then N bytes, or without a
    length one line. Other items are stepped over unparsed; past MAX_ITEMS items, the rest of
    the envelope is not looked at. ValueError if an item header is broken.
    """
    payloads: list[object] = []
    for _ in range(MAX_ITEMS):
        if at >= len(data):
            break
        line, at = _line(data, at)
        if not line.strip():  # a blank line between items, or the envelope's last newline
            continue
        item = _json(line)
        if not isinstance(item, dict):
            raise ValueError("an item header is not a JSON object")
        length = item.get("length")
        if length is None:
            payload, at = _line(data, at)
        elif (
            isinstance(length, int)
            and not isinstance(length, bool)
            and 0 <= length <= len(data) - at
        ):
            payload, at = data[at : at + length], at + length
            at += data[at : at + 1] == b"\n"
        else:
            raise ValueError("an item length is not a whole number of the bytes left")
        if item.get("type") == "check_in":
            try:
                payloads.append(_json(payload))
            except ValueError:
                payloads.append(None)
    return payloads


def _line(data: bytes, at: int) -> tuple[bytes, int]:
    end = data.find(b"\n", at)
    return (data[at:], len(data)) if end < 0 else (data[at:end], end + 1)


def _json(text: bytes) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def check_in(payload: object, slug: object = None) -> CheckIn | None:
    """A check-in's JSON as a ping; None if it cannot be one (no slug, a status other than
    in_progress, ok or error, a check_in_id that is not a UUID), which Sentry drops too.
    `slug` (the HTTP form's path) stands in for the payload's monitor_slug."""
    if not isinstance(payload, Mapping):
        return None
    slug = monitor_slug(payload.get("monitor_slug") if slug is None else slug)
    status = payload.get("status")
    action = ACTIONS.get(status) if isinstance(status, str) else None
    if not slug or action is None:
        return None
    try:
        rid = run_id(payload.get("check_in_id"))
    except ValueError:
        return None
    duration = payload.get("duration")
    seconds = None
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        seconds = sensible_duration(float(duration))
    config = payload.get("monitor_config")
    return CheckIn(slug, action, rid, seconds, config if isinstance(config, Mapping) else None)


def query_check_in(slug: str, query: Mapping[str, str]) -> CheckIn:
    """The HTTP form's check-in, from its query; 400 for a value Sentry refuses too."""
    payload: dict[str, object] = {
        "status": query.get("status"),
        "check_in_id": query.get("check_in_id"),
    }
    if "duration" in query:
        try:
            payload["duration"] = float(query["duration"])
        except ValueError:
            raise BadRequest("invalid duration") from None
    found = check_in(payload, slug)
    if found is None:
        raise BadRequest("invalid check-in: status must be in_progress, ok or error")
    return found


def monitor_slug(text: object) -> str:
    """A monitor slug as Sentry keeps it (Django's slugify): `Nightly Backup` is
    `nightly-backup`, so a Celery beat entry's name finds the check Sentry would."""
    if not isinstance(text, str):
        return ""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^\w\s-]", "", plain.lower())
    slug = re.sub(r"[-\s]+", "-", slug).strip("-_")
    return slug[:MAX_SLUG].rstrip("-")


def run_id(value: object) -> str | None:
    """check_in_id as a rid; None for none and for the nil UUID ("the latest run")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("check_in_id is not a string")
    rid = uuid.UUID(value)
    return None if rid.int == 0 else str(rid)


# -- monitor_config: pure ---------------------------------------------------------------------


def monitor_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """A monitor_config as the management API's fields, each checked by the API's own rules
    (api/schema.py: the bounds of limits.py, validate_cron, validate_tz); one that fails them
    is left out, and the check-in still counts.

    What it leaves out is Sentry's default (1 minute of margin, 30 of runtime, UTC, one
    failure and one recovery in a row).
    The grace is checkin_margin *plus* max_runtime: a start ping does not stop the clock of a
    missed ping here, so a job that starts on time and runs 10 minutes would, with the margin
    alone, go down every run at the margin and up again at its end. With both, no run Sentry
    takes as healthy (started within the margin, done within max_runtime) alerts; a run that
    never starts is noticed max_runtime later than Sentry would. failure_issue_threshold and
    recovery_threshold are the check's failures and recoveries (runs in a row, as Sentry
    counts them); owner has no counterpart and is ignored.
    """
    margin = _minutes(config.get("checkin_margin"), DEFAULT_MARGIN)
    runtime = _minutes(config.get("max_runtime"), DEFAULT_MAX_RUNTIME)
    wanted = {
        **_schedule_fields(config.get("schedule")),
        "tz": config.get("timezone") or "UTC",
        "grace": margin + runtime,
        "max_runtime": runtime,
        "failures": config.get("failure_issue_threshold") or 1,
        "recoveries": config.get("recovery_threshold") or 1,
    }
    spec: dict[str, Any] = {}
    for field, value in wanted.items():
        try:
            spec.update(api_schema.parse_spec({field: value}))
        except BadRequest:
            continue
    return spec


def _schedule_fields(schedule: object) -> dict[str, object]:
    if not isinstance(schedule, Mapping):
        return {}
    value, unit = schedule.get("value"), schedule.get("unit")
    if schedule.get("type") == "crontab":
        return {"schedule": CRON_NAMES.get(value, value) if isinstance(value, str) else value}
    if schedule.get("type") != "interval" or not isinstance(unit, str):
        return {}
    if unit not in UNIT_SECONDS or isinstance(value, bool) or not isinstance(value, int):
        return {}
    return {"timeout": value * UNIT_SECONDS[unit]}


def _minutes(value: object, default: int) -> int:
    """Whole minutes as seconds; the default for none, or for what cannot be minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value * 60
    return default * 60


def monitor_check(slug: str, spec: Mapping[str, Any]) -> Want:
    """What a check becomes with a monitor_config's fields (API fields: monitor_fields);
    a new one named by its slug."""

    def want(existing: Check | None) -> CheckDefinition:
        new = {"name": slug, "slug": slug} if existing is None else {}
        return api_schema.definition({**spec, **new}, existing, 3, ())

    return want


# -- handlers ---------------------------------------------------------------------------------


@routes.post(r"/api/{project:\d+}/envelope/")
@plain_errors
async def envelope(request: web.Request) -> web.Response:
    """An SDK's envelope: its check-ins recorded, everything else dropped; answered as
    Sentry does, 200 with a JSON object."""
    key = request_key(request.headers, request.query)
    if key is not None:
        await require_ping_key(request, key)  # a stranger's body is never read
    data = await read_capped(request, KEYLESS_ENVELOPE if key is None else ENVELOPE_LIMIT)
    if data is None:
        hint = "" if key is not None else "; send the key in X-Sentry-Auth to send more"
        raise TooLarge(f"envelope too large{hint}")
    try:
        header, at = envelope_header(data)
        payloads = check_in_payloads(data, at)
    except ValueError:
        raise BadRequest("invalid envelope") from None
    if key is None:
        key = dsn_key(header.get("dsn")) or ""
        await require_ping_key(request, key)
    for payload in payloads:
        found = check_in(payload)
        if found is None:
            continue
        try:
            await record(request, key, found)
        except (NotFound, Conflict):  # no such check, or two with its slug: not recorded
            continue
    return web.json_response({})


@routes.route("*", r"/api/{project:\d+}/cron/{tail:.+}")
@plain_errors
async def cron(request: web.Request) -> web.Response:
    """Sentry's HTTP check-in: /cron/<monitor-slug>/<key>/?status=..., or the key in
    X-Sentry-Auth or `sentry_key` and the path ending at the slug; the trailing slash is
    optional. A JSON body is a whole check-in, monitor_config included. Answered 202."""
    tail = request.match_info["tail"]
    parts = (tail[:-1] if tail.endswith("/") else tail).split("/")
    if len(parts) > 2:
        raise NotFound()
    slug = parts[0]
    key = parts[1] if len(parts) == 2 else request_key(request.headers, request.query)
    await require_ping_key(request, key or "")
    if request.content_type == "application/json" and request.body_exists:
        body = await read_capped(request, CHECK_IN_LIMIT)
        if body is None:
            raise TooLarge("check-in too large")
        try:
            found = check_in(_json(body), slug)
        except ValueError:
            raise BadRequest("could not parse request body") from None
        if found is None:
            raise BadRequest("invalid check-in")
    else:
        found = query_check_in(slug, request.query)
    await record(request, key or "", found)
    return web.Response(status=202)


async def require_ping_key(request: web.Request, key: str) -> None:
    """404, the answer to any unknown token, unless `key` is the ping key."""
    if not SLUG_CHARS.fullmatch(key) or not await request.app[STORE].is_ping_key(key):
        raise NotFound()


async def record(request: web.Request, key: str, found: CheckIn) -> None:
    """The check-in's monitor_config applied, then the check-in recorded as a slug ping.
    Sentry's query parameters are its protocol's, not metrics."""
    if found.config is not None:
        await apply_config(request, found.slug, found.config)
    incoming = ping_in(request, found.action, None, found.rid, b"", 0)
    incoming = replace(incoming, duration=found.duration, metrics=(), notes=())
    await accept(request, by_slug(key, found.slug), incoming)


async def apply_config(request: web.Request, slug: str, config: Mapping[str, Any]) -> None:
    """Create the check `slug`, or change it to what `config` says; nothing is written when
    it already is that. A config-file check is left as the file says (logged once)."""
    spec = monitor_fields(config)
    if "schedule" not in spec and "timeout" not in spec:
        return  # Sentry makes no monitor without a schedule; neither is one changed by it
    try:
        await declare(request, slug, monitor_check(slug, spec), ACTOR)
    except Conflict:
        noted = request.app[MANAGED_NOTED]
        if slug not in noted:
            noted.add(slug)
            log.info("check %s is declared in the config file: the monitor_config of its "
                     "Sentry check-ins is ignored", slug)  # fmt: skip
