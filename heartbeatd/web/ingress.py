"""Other monitors' ping URLs, so the clients people already run work by changing a base URL.

Each form is turned into the same PingIn and recorded by ping.accept, so it follows the same
rules as a Healthchecks ping: answered only once on disk, 404 for an unknown token, 503 when
the database cannot take the write. Only the answers differ, each in its client's own shape.
The token is the check's UUID (the secret of its /ping URL); Cronitor's telemetry form, which
has an API key and a monitor key, takes the instance ping key and the check's slug.

- Uptime Kuma push: /api/push/<uuid>?status=up|down&msg=&ping=        (Kuma's own path)
- Cronitor:         /cronitor/<uuid>[/run|/complete|/fail] and /cronitor/p/<ping-key>/<slug>
                    (cronitor.link's paths under /cronitor)
- Dead Man's Snitch: /snitch/<uuid>?m=&s=                             (nosnch.in's under /snitch)
- Gatus external endpoint: POST /api/v1/endpoints/<slug>/external?success=&error=&duration=
                    with `Authorization: Bearer <ping-key>`                    (Gatus's own path)
"""

from __future__ import annotations

import functools
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import parse_qsl

from aiohttp import web

from heartbeatd.core.errors import BadRequest, HeartbeatdError, NotFound, plain_errors
from heartbeatd.store import BySlug, ByUuid
from heartbeatd.web.keys import CONFIG, STORE
from heartbeatd.web.ping import SLUG_CHARS, UUID_FORM, accept, by_slug, ping_in, read_body

routes = web.RouteTableDef()

KUMA_NOT_FOUND = "Monitor not found or not active."
MAX_KUMA_PING_MS = 86_400_000  # Kuma refuses more: seconds sent as milliseconds, most likely
MAX_DURATION = 365 * 86400.0
FORM_LIMIT = 64 * 1024  # a form-encoded body is read this far for its fields
CRONITOR_STATES = {"run", "complete", "fail", "ok"}
CRONITOR_FIELDS = {"state", "message", "msg", "series", "status_code", "duration"}
SNITCH_FIELDS = {"m", "s"}
COMPACT_JSON = functools.partial(json.dumps, separators=(",", ":"))
# Cronitor's series ids are free text; one that is not a UUID becomes a stable rid from this.
SERIES_NAMESPACE = uuid.UUID("5d0f6b8e-2b4e-4f5e-9a51-93a8f1c3c0de")


def by_uuid(token: str) -> ByUuid:
    if not UUID_FORM.fullmatch(token):
        raise NotFound()
    return ByUuid(token)


def message_body(request: web.Request, text: str) -> tuple[bytes, int]:
    """A message parameter as a ping body: cut to the body limit like any other body."""
    data = text.encode()
    return data[: request.app[CONFIG].ping_body_limit], len(data)


def sensible_duration(seconds: float) -> float | None:
    """A client-reported run length, or None when it cannot be one (negative, NaN, years)."""
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION else None


async def fields_and_body(
    request: web.Request, target: ByUuid | BySlug, known: set[str]
) -> tuple[dict[str, str], bytes, int]:
    """Query fields, plus the `known` ones of a form-encoded body (`curl -d m=...`) of a ping
    to `target` (404 before the body is read if nobody has that token; see ping.read_body).

    A body that carries none of them is the job's output, kept up to the body limit: curl
    labels `--data-raw "$output"` as a form too.
    """
    fields = dict(request.query)
    limit = request.app[CONFIG].ping_body_limit
    data, size = await read_body(request, target, max(limit, FORM_LIMIT))
    if request.content_type == "application/x-www-form-urlencoded":
        form = {k: v for k, v in parse_qsl(data.decode(errors="replace")) if k in known}
        if form:
            fields.update(form)
            return fields, b"", 0
    return fields, data[:limit], size


# -- Uptime Kuma -----------------------------------------------------------------------------


@routes.route("*", "/api/push/{token}")
async def uptime_kuma_push(request: web.Request) -> web.Response:
    """Kuma's push monitor: status "up" (the default) is a success, anything else a failure;
    msg is kept as the body and ping (milliseconds) as the run's duration."""
    try:
        target = by_uuid(request.match_info["token"])
        action = "success" if request.query.get("status", "up") == "up" else "fail"
        body, size = message_body(request, request.query.get("msg", ""))
        incoming = ping_in(request, action, None, None, body, size)
        await accept(request, target, replace(incoming, duration=kuma_duration(request.query)))
    except HeartbeatdError as e:
        text = KUMA_NOT_FOUND if isinstance(e, NotFound) else e.text
        return kuma_answer({"ok": False, "msg": text}, status=e.status)
    return kuma_answer({"ok": True})


def kuma_answer(data: dict[str, object], status: int = 200) -> web.Response:
    """JSON as Kuma (express) writes it: compact, UTF-8."""
    return web.json_response(data, status=status, dumps=COMPACT_JSON)


def kuma_duration(query: Mapping[str, str]) -> float | None:
    """Kuma's `ping` in seconds; a value Kuma would refuse is dropped, not the heartbeat."""
    try:
        milliseconds = float(query.get("ping", ""))
    except ValueError:
        return None
    return milliseconds / 1000 if 0 <= milliseconds <= MAX_KUMA_PING_MS else None


# -- Cronitor --------------------------------------------------------------------------------


@routes.route("*", "/cronitor/p/{api_key}/{monitor}")
@plain_errors
async def cronitor_telemetry(request: web.Request) -> web.Response:
    """cronitor.link/p/<api-key>/<monitor-key>?state=...: the ping key and a check's slug."""
    key, slug = request.match_info["api_key"], request.match_info["monitor"]
    if not (SLUG_CHARS.fullmatch(key) and SLUG_CHARS.fullmatch(slug)):
        raise NotFound()
    if slug != slug.lower():
        raise BadRequest("invalid url format")
    return await cronitor_event(request, BySlug(key, slug), None)


@routes.route("*", "/cronitor/{code}")
@plain_errors
async def cronitor_code(request: web.Request) -> web.Response:
    """cronitor.link/<code>?state=...: the telemetry fields on a monitor's own URL."""
    return await cronitor_event(request, by_uuid(request.match_info["code"]), None)


@routes.route("*", "/cronitor/{code}/{state}")
@plain_errors
async def cronitor_legacy(request: web.Request) -> web.Response:
    """cronitor.link/<code>/run|complete|fail, as borgmatic's Cronitor hook sends them."""
    state = request.match_info["state"]
    if state not in ("run", "complete", "fail"):
        raise NotFound()
    return await cronitor_event(request, by_uuid(request.match_info["code"]), state)


async def cronitor_event(
    request: web.Request, target: ByUuid | BySlug, path_state: str | None
) -> web.Response:
    fields, body, size = await fields_and_body(request, target, CRONITOR_FIELDS)
    state = path_state or fields.get("state")
    if state is not None and state not in CRONITOR_STATES:
        raise BadRequest("invalid state")
    code = cronitor_status_code(fields.get("status_code"))
    action, exit_status = cronitor_action(state, code)
    message = fields.get("message", fields.get("msg"))
    if message:
        body, size = message_body(request, message)
    rid = series_rid(fields.get("series"))
    incoming = ping_in(request, action, exit_status, rid, body, size)
    await accept(request, target, replace(incoming, duration=cronitor_duration(fields)))
    return web.Response(text="OK")


def cronitor_status_code(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        code = int(value)
    except ValueError:
        raise BadRequest("invalid status_code") from None
    if not -(2**31) <= code < 2**31:
        raise BadRequest("invalid status_code")
    return code


def cronitor_action(state: str | None, code: int | None) -> tuple[str, int | None]:
    """run starts a run; fail fails; complete, ok or no state succeed unless the job's exit
    code (status_code) says otherwise."""
    if state == "run":
        return "start", None
    if state == "fail":
        return "fail", code
    return ("fail" if code else "success"), code


def series_rid(series: str | None) -> str | None:
    """Cronitor's series pairs a run with its end, as our rid does: a UUID is used as it is,
    anything else is mapped to the same UUID every time."""
    if not series:
        return None
    try:
        return str(uuid.UUID(series))
    except ValueError:
        return str(uuid.uuid5(SERIES_NAMESPACE, series))


def cronitor_duration(fields: Mapping[str, str]) -> float | None:
    try:
        return sensible_duration(float(fields.get("duration", "")))
    except ValueError:
        return None


# -- Dead Man's Snitch -----------------------------------------------------------------------


@routes.route("*", "/snitch/{token}")
@plain_errors
async def snitch(request: web.Request) -> web.Response:
    """nosnch.in/<token>?m=message&s=status: an empty or 0 status is a success, any other a
    failure (a number is kept as the exit status). Answers 202, as Dead Man's Snitch does."""
    target = by_uuid(request.match_info["token"])
    fields, body, size = await fields_and_body(request, target, SNITCH_FIELDS)
    if fields.get("m"):
        body, size = message_body(request, fields["m"])
    action, exit_status = snitch_status(fields.get("s", "").strip())
    await accept(request, target, ping_in(request, action, exit_status, None, body, size))
    return web.Response(status=202, text="OK")


def snitch_status(status: str) -> tuple[str, int | None]:
    if not status:
        return "success", None
    if status.isascii() and status.isdigit() and int(status) <= 255:
        code = int(status)
        return ("fail" if code else "success"), code
    return "fail", None


# -- Gatus -----------------------------------------------------------------------------------


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
               "m": 60.0, "h": 3600.0}  # fmt: skip
GO_DURATION_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
GO_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration: int64 nanoseconds


@routes.post("/api/v1/endpoints/{key}/external")
async def gatus_external(request: web.Request) -> web.Response:
    """A Gatus external endpoint's push: the key is the check's slug and the bearer token the
    instance ping key, so a Gatus user names the check after the endpoint's key
    (`<group>_<name>`, e.g. `core_ext-ep-test`) and pushes with `--token <ping key>`.

    Checked in Gatus's order, with its texts: `success` (400), the Authorization header (401),
    the endpoint (404; here also for a wrong token: the ping key is instance-wide, so telling
    which slugs exist to whoever lacks it would say more than Gatus's per-endpoint tokens do),
    then `duration` (400). An `error` is kept as the body of a failure; the answer is an empty
    200, as Gatus gives.
    """
    success = request.query.get("success")
    if success not in ("true", "false"):
        return gatus_answer(400, "missing or invalid success query parameter")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return gatus_answer(401, "invalid Authorization header")
    token = header.removeprefix("Bearer ").strip()
    if not token:
        return gatus_answer(401, "bearer token must not be empty")
    try:
        target = gatus_target(token, request.match_info["key"])
        if not await request.app[STORE].knows(target):
            raise NotFound()
        reported = request.query.get("duration", "")
        duration = go_duration(reported) if reported else None
    except HeartbeatdError as e:
        return gatus_answer(e.status, e.text)
    except ValueError as e:
        return gatus_answer(400, f"invalid duration: {e}")
    action = "success" if success == "true" else "fail"
    body, size = message_body(request, request.query.get("error", "") if action == "fail" else "")
    incoming = ping_in(request, action, None, None, body, size)
    try:
        await accept(
            request,
            target,
            replace(incoming, duration=None if duration is None else sensible_duration(duration)),
        )
    except HeartbeatdError as e:
        return gatus_answer(e.status, e.text)
    return gatus_answer(200, "")


def gatus_answer(status: int, text: str) -> web.Response:
    """Plain text, as Gatus's (fiber's SendString) answers are."""
    return web.Response(status=status, text=text)


def gatus_target(token: str, key: str) -> BySlug:
    """Gatus lowercases its keys, so a key in upper case names no endpoint: 404, as Gatus
    answers, where a slug URL in upper case is Healthchecks' 400."""
    if key != key.lower():
        raise NotFound()
    return by_slug(token, key)


def go_duration(text: str) -> float:
    """Seconds from a Go duration string (`1m30s`, `1.5h`, `-2ms`, `0`), as Go's
    time.ParseDuration reads it; raises ValueError with Go's own message."""
    quoted = f'"{text}"'
    rest = text[1:] if text[:1] in "+-" else text
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    seconds, at = 0.0, 0
    while at < len(rest):
        term = GO_DURATION_TERM.match(rest, at)
        assert term is not None  # every part of the pattern may be empty
        whole, fraction, unit = term.groups()
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        seconds += float(f"{whole or 0}.{fraction or 0}") * GO_UNITS[unit]
        at = term.end()
    if seconds > GO_MAX_DURATION:
        raise ValueError(f"time: invalid duration {quoted}")
    return -seconds if text.startswith("-") else seconds
