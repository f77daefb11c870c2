"""The Healthchecks management API under /api/v1/, /api/v2/ and /api/v3/ (PROTOCOL.md §4).

Same paths, JSON, status codes, CORS and key rules as Healthchecks, so its clients work by
changing a base URL; api_schema.py has the JSON. Every error is a JSON `{"error": "..."}`,
but for a body sent too slowly: that 408 is aiohttp's plain text, as on every route (bodies.py).
Checks declared in the config file are read-only here (403): the file is their source of
truth and would undo an API change at the next start. Each write goes through a store method
that writes its audit row in the same transaction, with the key's name as the actor.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from heartbeatd.core import model, silence
from heartbeatd.core.errors import BadRequest, Conflict, Forbidden, HeartbeatdError, NotFound
from heartbeatd.core.model import UNIQUE_KEY_LENGTH, Check, CheckDefinition
from heartbeatd.core.silence import MAX_REASON
from heartbeatd.notify import iso
from heartbeatd.store import ApiKey
from heartbeatd.web import badges
from heartbeatd.web.api import schema as api_schema
from heartbeatd.web.api.openapi import OPENAPI
from heartbeatd.web.api.schema import Channel, Site
from heartbeatd.web.bodies import read_capped
from heartbeatd.web.keys import CHECKS, CLOCK, CONFIG, STORE
from heartbeatd.web.ping import UUID_FORM, snooze_length, storable

routes = web.RouteTableDef()

PREFIX = "/api/v{version:[123]}"
# Healthchecks' list paths end in a slash; Ansible's community.healthchecksio calls them without
# one (`checks`, `channels`, `checks/<uuid>/pings`), which Healthchecks answers with a redirect.
# A redirected POST loses its body, so both forms are answered alike instead.
SLASH = "{slash:/?}"
MAX_BODY = 1_000_000
# A body read before its key is checked (the key is its `api_key`) is cut here. The largest
# definition limits.py allows, every character escaped as \uXXXX, is about 82 kB; a stranger's
# body costs us at most this much reading and parsing (2 ms at worst: 65,000 numbers in a list).
KEYLESS_BODY = 128 * 1024
KEY_LENGTH = 32
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: the largest a date can show
MAX_PINGS = 1000
MAX_PING_NUMBER_DIGITS = 18  # past this, SQLite's integers overflow


class Unauthorized(HeartbeatdError):
    status = 401
    text = "missing api key"


class TooLarge(HeartbeatdError):
    status = 413

    def __init__(self, limit: int) -> None:
        hint = "" if limit == MAX_BODY else "; send the key in X-Api-Key to send more"
        super().__init__(f"request body is larger than {limit} bytes{hint}")


class Call:
    """One authorized API request: the key, the parsed body, and what responses need."""

    def __init__(self, request: web.Request, key: ApiKey, body: dict[str, Any]) -> None:
        self.request, self.key, self.body = request, key, body
        self.app = request.app
        self.store = request.app[STORE]
        self.now = request.app[CLOCK].now()
        self.version = int(request.match_info.get("version", "3"))
        self.actor = f"api:{key.name}"
        self.channels = [
            Channel(api_schema.channel_id(spec.name), spec.name, spec.type)
            for spec in request.app[CONFIG].notifiers
        ]
        self._badge_secret: str | None = None

    async def site(self) -> Site:
        secret = self._badge_secret = self._badge_secret or await self.store.badge_secret()
        root = self.app[CONFIG].site_url

        def badge_url(check: Check) -> str:
            return badges.check_badge_urls(secret, check, root)["svg"]

        return Site(root, self.version, badge_url)

    async def check_json(self, check: Check) -> dict[str, Any]:
        router = self.store.router
        names = {*router(check, "down"), *router(check, "up")}
        ids = [c.id for c in self.channels if c.name in names]
        return api_schema.check_json(check, self.now, await self.site(), self.key.read_only, ids)

    async def find(self, code: str, by_unique_key: bool = False) -> Check:
        """The check with UUID `code` (or, for reads, unique_key `code`); 404 if none."""
        if UUID_FORM.fullmatch(code) or (by_unique_key and len(code) == UNIQUE_KEY_LENGTH):
            return await self.store.check_by_key(code)
        raise NotFound()

    async def find_writable(self, code: str) -> Check:
        check = await self.find(code)
        refuse_managed(check)
        return check

    def builder(self, spec: dict[str, Any]) -> Callable[[Check | None], CheckDefinition]:
        """What the store calls, inside its transaction, to turn the check it found (None:
        none) into the definition to save; refuses config-file checks."""

        def build(existing: Check | None) -> CheckDefinition:
            refuse_managed(existing)
            return api_schema.definition(spec, existing, self.version, self.channels)

        return build


def refuse_managed(check: Check | None) -> None:
    if check is not None and check.managed:
        raise Forbidden(
            f"check {check.slug!r} is declared in the config file; change it there "
            "(the API may read it, not change it)"
        )


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def endpoint(*methods: str, readers: bool = False) -> Callable[[Handler], Any]:
    """CORS, OPTIONS, 405, the key check and JSON errors around a handler, as Healthchecks'
    `cors` and `authorize` decorators do. `readers`: read-only keys may GET it."""
    allowed = ", ".join([*methods, "OPTIONS"])
    cors = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Headers": "X-Api-Key",
        "Access-Control-Allow-Methods": allowed,
        "Access-Control-Max-Age": "600",
    }

    def decorate(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                return web.Response(status=204, headers=cors)
            if request.method not in methods:
                return web.json_response({"error": "method not allowed"}, status=405, headers=cors)
            try:
                key, body = await authorize(request, not readers or request.method != "GET")
                response = await handler(Call(request, key, body))
            except HeartbeatdError as e:
                response = web.json_response({"error": e.text}, status=e.status)
            response.headers.update(cors)
            return response

        return handle

    return decorate


async def authorize(request: web.Request, write: bool) -> tuple[ApiKey, dict[str, Any]]:
    """The caller's key and the JSON object its POST carries; 401 unless the key is live and
    allowed to do this.

    A key in `X-Api-Key` is checked before the body is read, so a caller without a good one
    cannot make us read or parse its body. Healthchecks also takes the key as a POST body's
    `api_key`; such a body has to be read before its key can be checked, so it is read only up
    to KEYLESS_BODY bytes, at the pace every body is (bodies.py).
    """
    header = request.headers.get("X-Api-Key")
    if header is not None:
        found = await key_allowed(request, header, write)
        return found, await read_json(request, MAX_BODY)
    body = await read_json(request, KEYLESS_BODY)
    return await key_allowed(request, body.get("api_key"), write), body


async def key_allowed(request: web.Request, key: object, write: bool) -> ApiKey:
    if not isinstance(key, str) or len(key) != KEY_LENGTH:
        raise Unauthorized("missing api key")
    found = await request.app[STORE].authenticate(key, request.app[CLOCK].now())
    if found is None or (write and found.read_only):
        raise Unauthorized("wrong api key")
    return found


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The JSON object a POST carries ({} when empty, or not a POST); 413 past `limit` bytes,
    400 if not an object."""
    if request.method != "POST":
        return {}
    raw = await read_capped(request, limit)
    if raw is None:
        raise TooLarge(limit)
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("could not parse request body") from None
    if not isinstance(parsed, dict):
        raise BadRequest("json validation error: value is not an object")
    return parsed


# -- checks ---------------------------------------------------------------------------------


@routes.route("*", f"{PREFIX}/checks{SLASH}")
@endpoint("GET", "POST", readers=True)
async def checks(call: Call) -> web.StreamResponse:
    if call.request.method == "POST":
        return await create_check(call)
    tags = set(call.request.query.getall("tag", []))
    slug = call.request.query.get("slug")
    found = []
    for check in await call.store.list_checks():
        if tags <= set(check.tags.split()) and (not slug or check.slug == slug):
            found.append(await call.check_json(check))
    return web.json_response({"checks": found})


async def create_check(call: Call) -> web.StreamResponse:
    """Create, or with `unique` update the first check that matches (200 instead of 201)."""
    spec = api_schema.parse_spec(call.body)
    unique = api_schema.unique_columns(spec)
    build = call.builder(spec)
    check, created = await call.app[CHECKS].upsert(unique, build, call.actor)
    return web.json_response(await call.check_json(check), status=201 if created else 200)


@routes.route("*", f"{PREFIX}/checks/{{code}}")
@endpoint("GET", "POST", "DELETE", readers=True)
async def single(call: Call) -> web.StreamResponse:
    code = call.request.match_info["code"]
    if call.request.method == "GET":
        return web.json_response(await call.check_json(await call.find(code, by_unique_key=True)))
    check = await call.find_writable(code)
    if call.request.method == "DELETE":
        removed = await call.app[CHECKS].remove(check.uuid, call.actor)
        return web.json_response(await call.check_json(removed))
    build = call.builder(api_schema.parse_spec(call.body))
    updated = await call.app[CHECKS].update(check.uuid, build, call.actor)
    return web.json_response(await call.check_json(updated))


@routes.route("*", f"{PREFIX}/checks/{{code}}/pause")
@endpoint("POST")
async def pause(call: Call) -> web.StreamResponse:
    """A no-op on a paused check (newer Healthchecks)."""
    check = await call.find_writable(call.request.match_info["code"])
    paused, _ = await call.app[CHECKS].change_state(check.uuid, model.pause, call.actor)
    return web.json_response(await call.check_json(paused))


@routes.route("*", f"{PREFIX}/checks/{{code}}/resume")
@endpoint("POST")
async def resume(call: Call) -> web.StreamResponse:
    check = await call.find_writable(call.request.match_info["code"])
    resumed, flip = await call.app[CHECKS].change_state(check.uuid, model.resume, call.actor)
    if flip is None:
        raise Conflict("check is not paused")
    return web.json_response(await call.check_json(resumed))


# -- pings and flips ------------------------------------------------------------------------


@routes.route("*", f"{PREFIX}/checks/{{code}}/pings{SLASH}")
@endpoint("GET")
async def pings(call: Call) -> web.StreamResponse:
    """Newest first; each success or failure that closed a run carries its duration."""
    check = await call.find(call.request.match_info["code"])
    limit = min(call.app[CONFIG].ping_retention, MAX_PINGS)
    site = await call.site()
    rows = await call.store.pings(check.id, limit)
    return web.json_response({"pings": [api_schema.ping_json(row, check, site) for row in rows]})


@routes.route("*", f"{PREFIX}/checks/{{code}}/pings/{{n}}/body")
@endpoint("GET")
async def ping_body(call: Call) -> web.StreamResponse:
    check = await call.find(call.request.match_info["code"])
    n = call.request.match_info["n"]
    body = None
    if n.isascii() and n.isdigit() and len(n) <= MAX_PING_NUMBER_DIGITS:
        body = await call.store.ping_body(check.id, int(n))
    if body is None:
        raise NotFound()
    return web.Response(body=body, content_type="text/plain")


@routes.route("*", f"{PREFIX}/checks/{{code}}/flips{SLASH}")
@endpoint("GET", readers=True)
async def flips(call: Call) -> web.StreamResponse:
    """`{"flips": [...]}`, newest first, filtered by `seconds`, `start` and `end`.

    The Healthchecks docs show a bare array here, but its code (and so every real server)
    answers with this object; heartbeatd follows the code.
    """
    check = await call.find(call.request.match_info["code"], by_unique_key=True)
    query = call.request.query
    start: float | None = whole_number(query, "start")
    end = whole_number(query, "end")
    seconds = whole_number(query, "seconds")
    if seconds is not None:
        start = max(start or 0, call.now - seconds)
    rows = await call.store.flips_between(check.id, start, end)
    return web.json_response({"flips": [api_schema.flip_json(at, new) for at, new in rows]})


def whole_number(query: Mapping[str, str], name: str, high: int = MAX_TIMESTAMP) -> int | None:
    """A query parameter that must be a whole number from 0 to `high`; None if absent."""
    value = query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > high:
        raise BadRequest(f"{name}: expected a whole number from 0 to {high}")
    return int(value)


# -- the rest -------------------------------------------------------------------------------


@routes.route("*", f"{PREFIX}/channels{SLASH}")
@endpoint("GET")
async def channels(call: Call) -> web.StreamResponse:
    """heartbeatd's notifiers, as Healthchecks' integrations (`kind` is the notifier type)."""
    return web.json_response(
        {"channels": [{"id": c.id, "name": c.name, "kind": c.kind} for c in call.channels]}
    )


@routes.route("*", f"{PREFIX}/badges{SLASH}")
@endpoint("GET", readers=True)
async def badge_list(call: Call) -> web.StreamResponse:
    """Badge URLs for every tag, and `*` for all checks (badges.py serves them)."""
    secret = await call.store.badge_secret()
    root = call.app[CONFIG].site_url
    tags = {"*"}
    for check in await call.store.list_checks():
        tags.update(check.tags.split())
    result = {}
    for tag in sorted(tags):
        named = None if tag == "*" else tag
        three = badges.badge_urls(secret, named, with_late=True, root=root)
        result[tag] = badges.badge_urls(secret, named, root=root) | {
            f"{fmt}3": url for fmt, url in three.items()
        }
    return web.json_response({"badges": result})


@routes.get(f"{PREFIX}/status{SLASH}")
async def status(request: web.Request) -> web.Response:
    """Database liveness for load balancers: no key, plain `OK`, as Healthchecks answers;
    503 with a one-line reason while the database cannot be read or cannot take writes."""
    try:
        await request.app[STORE].healthy(request.app[CLOCK].now())
    except HeartbeatdError as e:
        return web.Response(status=e.status, text=e.text)
    return web.Response(text="OK")


@routes.get("/api/v3/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (api_openapi.py); public, like Healthchecks'
    own API documentation."""
    return web.json_response(OPENAPI, headers={"Access-Control-Allow-Origin": "*"})


@routes.route("*", f"/api/v3/audit{SLASH}")
@endpoint("GET")
async def audit(call: Call) -> web.StreamResponse:
    """heartbeatd's extension: the audit log, newest first (`?limit=`, default 100)."""
    limit = whole_number(call.request.query, "limit", high=100_000)
    rows = await call.store.audit_log(100 if limit is None else limit)
    for row in rows:
        row["at"] = iso(row["at"])
    return web.json_response({"audit": rows})


# -- silences (heartbeatd's extension) ------------------------------------------------------


@routes.route("*", "/api/v3/silences/")
@endpoint("GET", "POST", readers=True)
async def silences(call: Call) -> web.StreamResponse:
    """The config's windows and the running snoozes; POST {"check", "for", "reason"} snoozes
    a check (replacing its snooze), as its /ping/<uuid>/snooze URL does."""
    if call.request.method == "POST":
        check = await call.find(_text_field(call.body, "check", 36))
        seconds = snooze_length(str(call.body.get("for", "")) or None)
        if seconds <= 0:
            raise BadRequest("for: must be more than 0s; DELETE lifts a snooze")
        reason = _text_field(call.body, "reason", MAX_REASON, required=False)
        await call.app[CHECKS].snooze(check.uuid, seconds, reason, call.actor)
        return web.json_response(await _silences_json(call, check.id), status=201)
    return web.json_response({"silences": await _silences_json(call)})


@routes.route("*", "/api/v3/silences/{code}")
@endpoint("DELETE")
async def lift_snooze(call: Call) -> web.StreamResponse:
    """Lift a check's snooze; its held alerts are settled at once."""
    check = await call.find(call.request.match_info["code"])
    if check.id not in await call.store.snoozes(call.now):
        raise NotFound("the check is not snoozed")
    await call.app[CHECKS].snooze(check.uuid, 0.0, "", call.actor)
    return web.json_response({"silences": await _silences_json(call)})


async def _silences_json(call: Call, only: int | None = None) -> Any:
    """Every silence (or the snooze of check `only`) with times as ISO 8601."""
    snoozed = await call.store.snoozed_checks(call.now)
    shown = silence.listed(call.store.silences, snoozed, call.now)
    for item in shown:
        for key in ("start", "created", "ends"):
            if key in item:
                item[key] = iso(item[key])  # type: ignore[arg-type]
    if only is not None:
        check_uuid = next(c.uuid for c, _ in snoozed if c.id == only)
        return next(item for item in shown if item.get("check") == check_uuid)
    return shown


def _text_field(body: Mapping[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = body.get(name, None if required else "")
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"json validation error: {name} is not a string of at most {limit}")
    return storable(value)
