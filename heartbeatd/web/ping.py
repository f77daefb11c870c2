"""The Healthchecks ping URLs: /ping/<uuid>[/start|/fail|/log|/<exit>] and the slug form,
and heartbeatd's /ping/<uuid>/snooze?for=2h (a silence a script sets before planned work).

The reply is sent only after the ping is committed (store.record_ping returns after the group
commit), so every "OK" is on disk. PROTOCOL.md §1 has the rules followed here.
"""

from __future__ import annotations

import ipaddress
import re
import uuid

from aiohttp import web

from heartbeatd.core.durations import format_duration, parse_duration
from heartbeatd.core.errors import BadRequest, NotFound, plain_errors
from heartbeatd.core.limits import MAX_SLUG
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.core.silence import MAX_REASON, MAX_SNOOZE
from heartbeatd.store import BySlug, ByUuid, PingIn, PingResult
from heartbeatd.web.bodies import paced
from heartbeatd.web.declare import declare, declared_changes, with_changes
from heartbeatd.web.keys import CHECKS, CONFIG, STORE
from heartbeatd.web.prometheus import STATS

routes = web.RouteTableDef()

# Both always with fullmatch: `$` after re.match also matches before a final newline.
UUID_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A ping key or a slug in a path. Any length and any case, so every slug a check can have
# (older ones, from before limits.py, may be longer than MAX_SLUG) can be pinged; upper case
# in a slug is refused later with Healthchecks' own answer.
SLUG_CHARS = re.compile(r"[-a-zA-Z0-9_]+")
ACTIONS = {"start", "fail", "log", "snooze"}  # snooze: no ping, a silence (silence.py)
MAX_UA = 200
CHUNK = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ping_path(tail: str) -> tuple[ByUuid | BySlug, str, int | None]:
    """(whose ping, action, exit status) from the part of the path after /ping/."""
    parts = tail.split("/")
    if UUID_FORM.fullmatch(parts[0]):
        target: ByUuid | BySlug = ByUuid(parts[0])
        rest = parts[1:]
        if rest == [""]:  # /ping/<uuid>/ is the success URL too
            rest = []
    elif len(parts) >= 2:
        target = by_slug(parts[0], parts[1])
        rest = parts[2:]
    else:
        raise NotFound()
    if not rest:
        return target, "success", None
    if len(rest) == 1 and rest[0] in ACTIONS:
        return target, rest[0], None
    if len(rest) == 1 and rest[0].isascii() and rest[0].isdigit():
        code = int(rest[0])
        if code > 255:
            raise BadRequest("invalid url format")
        return target, ("fail" if code else "success"), code
    raise NotFound()


def by_slug(ping_key: str, slug: str, create: bool = False) -> BySlug:
    """A ping to a check by the instance ping key and its slug, or to a new check of that slug
    if `create`; a slug longer than a check's may be is pinged if it exists, never created."""
    if not (SLUG_CHARS.fullmatch(ping_key) and SLUG_CHARS.fullmatch(slug)):
        raise NotFound()
    if slug != slug.lower():
        raise BadRequest("invalid url format")
    return BySlug(ping_key, slug, create=create and len(slug) <= MAX_SLUG)


def parse_rid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        rid = uuid.UUID(value)
    except ValueError:
        raise BadRequest("invalid uuid format") from None
    if len(value) != 36:  # uuid.UUID also takes braces, URNs and bare hex; the protocol does not
        raise BadRequest("invalid uuid format")
    return str(rid)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The pinger's address: X-Forwarded-For is believed only from a trusted proxy.

    Walks the header from the right, past our own proxies, to the first address they did not
    add themselves; a client cannot forge its way past them.
    """
    address = peer or ""
    if not forwarded_for or not _is_trusted(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        address = _strip_port(hop)
        if not _is_trusted(address, trusted):
            break
    return address


def _strip_port(hop: str) -> str:
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        host, _, port = hop.rpartition(":")
        return host if port.isdigit() and host.count(":") == 0 else hop


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


async def read_body(request: web.Request, target: ByUuid | BySlug, limit: int) -> tuple[bytes, int]:
    """The first `limit` bytes of the body of a ping to `target`, and how many the client sent.

    A ping to a token nobody has gets its 404 before its body is read: reading first let any
    client hold a connection with a slow body to a guessed URL, and cost us the whole body of
    every guess. The body is read at a pace (bodies.py); the part past `limit` is read and
    dropped chunk by chunk, so a 100 MB body costs time, not memory. A body that breaks off or
    will not decode (bad chunking, bad gzip, the client hung up) is the client's mistake: 400,
    and the ping is not recorded.
    """
    if not request.body_exists:
        return b"", 0
    if not await request.app[STORE].knows(target):
        raise NotFound()
    kept: list[bytes] = []
    room = limit
    total = 0
    try:
        async with paced(request):
            async for chunk in request.content.iter_chunked(CHUNK):
                total += len(chunk)
                if room > 0:
                    kept.append(chunk[:room])
                    room -= len(kept[-1])
    except (web.RequestPayloadError, ConnectionResetError):
        raise BadRequest("invalid request body") from None
    return b"".join(kept), total


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` as SQLite can store it: each lone surrogate becomes U+FFFD.

    aiohttp keeps header bytes that are not UTF-8 as lone surrogates (surrogateescape), and
    JSON's "\\ud800" is one too; sqlite3 cannot encode them, so stored as they came they made
    a 500. Headers are how they reach a ping (and every ingress form, through ping_in); the
    query string and forms are decoded with replacement or refused, and the API refuses them.
    """
    return LONE_SURROGATE.sub("\ufffd", text)


@routes.route("*", "/ping/{tail:.*}")
@plain_errors
async def ping(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    target, action, exit_status = parse_ping_path(request.match_info["tail"])
    if action == "snooze":
        return await snooze(request, target)
    rid = parse_rid(request.query.get("rid"))
    declared = False
    if isinstance(target, BySlug) and request.query.get("create") == "1":
        target = by_slug(target.ping_key, target.slug, create=True)
        declared = await declare_check(request, target)
    body, size = await read_body(request, target, config.ping_body_limit)
    result = await accept(request, target, ping_in(request, action, exit_status, rid, body, size))
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Ping-Body-Limit": str(config.ping_body_limit),
        "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    }
    if result.created or declared:
        return web.Response(status=201, text="Created", headers=headers)
    return web.Response(text="OK", headers=headers)


async def declare_check(request: web.Request, target: BySlug) -> bool:
    """The check a `?create=1` slug ping declares (`period` or `cron`, `tz`, `grace`,
    `max_runtime`, `misses`), made or brought in line before the ping is recorded; True when
    made. Only once the ping key is known right: the key is what lets a client define checks."""
    changes = declared_changes(request.query)
    if not changes:
        return False
    if not await request.app[STORE].knows(target):
        raise NotFound()
    return await declare(request, target.slug, with_changes(target.slug, changes), "ping")


async def snooze(request: web.Request, target: ByUuid | BySlug) -> web.Response:
    """`?for=2h` silences the check's alerts for that long from now (`for=0` lifts it), with
    an optional `reason` cut to MAX_REASON. Bounded like a ping: no body is read, and the one
    snooze a check has is replaced, so no sender can grow the table past the checks."""
    reason = storable(request.query.get("reason", ""))[:MAX_REASON]
    seconds = snooze_length(request.query.get("for"))
    await request.app[CHECKS].snooze(target, seconds, reason, None)
    return web.Response(text="OK", headers={"Cache-Control": "no-cache, no-store"})


def snooze_length(text: str | None) -> float:
    """Seconds of a snooze from `2h`, `30m`, `1d`; BadRequest past MAX_SNOOZE."""
    if text is None:
        raise BadRequest("for= is required, e.g. ?for=2h")
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if seconds > MAX_SNOOZE:
        raise BadRequest(f"for= may be at most {format_duration(MAX_SNOOZE)}")
    return seconds


def ping_in(
    request: web.Request, action: str, exit_status: int | None, rid: str | None, body: bytes,
    size: int,
) -> PingIn:  # fmt: skip
    """A ping as the store takes it, with where it came from (see client_address)."""
    trusted = request.app[CONFIG].trusted_proxies
    peer_trusted = _is_trusted(request.remote or "", trusted)
    scheme = request.headers.get("X-Forwarded-Proto", "http") if peer_trusted else request.scheme
    scheme = storable(scheme)
    metrics: dict[str, float] = {}
    notes: list[str] = []
    if request.query_string:  # a bare ping parses nothing
        metrics, notes = ping_metrics.from_query(request.query.items())
    return PingIn(
        action=action,
        exit_status=exit_status,
        rid=rid,
        method=request.method,
        scheme=scheme,
        remote_addr=storable(
            client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
        ),
        ua=storable(request.headers.get("User-Agent", "")[:MAX_UA]),
        body=body,
        body_size=size,
        metrics=tuple(metrics.items()),
        notes=tuple(notes),
        json_body=bool(body) and request.content_type == "application/json",
    )


async def accept(request: web.Request, target: ByUuid | BySlug, incoming: PingIn) -> PingResult:
    """Record a ping (any URL form) and tell the monitor and dispatcher what it changed.

    Returns once the ping is on disk; raises NotFound for an unknown token.
    """
    return await record(request.app, target, incoming)


async def record(app: web.Application, target: ByUuid | BySlug, incoming: PingIn) -> PingResult:
    """accept, for a ping that came by another door than HTTP (an e-mail: smtp.py)."""
    result = await app[CHECKS].ping(target, incoming)
    app[STATS].pings[incoming.action] += 1
    return result
