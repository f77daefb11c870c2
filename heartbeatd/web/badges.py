"""Status badges: SVG, JSON and shields.io endpoint JSON, for READMEs and wall displays.

URL shapes follow Healthchecks (PROTOCOL.md §4.4): `/badge/<key>/<sig>.<fmt>` for every check,
`/badge/<key>/<sig>/<tag>.<fmt>` per tag and `/b/<2|3>/<check key>.<fmt>` per check. A `-2`
after the signature (or `/b/2/`) asks for the two-state form, where late counts as up.

Badge URLs are published (READMEs, wall displays), so nothing in one may open another: the
instance's badge secret, random and kept in the database, never appears in a URL. Each part of
a URL is an HMAC of it with a label saying what the part is for: `<key>` names the instance,
`<sig>` signs one tag (as Healthchecks signs each tag), a check key stands for one check. So
a tag's URL shows neither another tag's badge nor any check's, a check's URL shows no other
check's, and none reveals a ping URL or can be guessed from one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote

from aiohttp import web

from heartbeatd.core.errors import NotFound, plain_errors
from heartbeatd.core.model import Check, Status, status_at
from heartbeatd.web.keys import CLOCK, STORE, TEMPLATES

routes = web.RouteTableDef()

FORMATS = ("svg", "json", "shields")
COLOURS = {"up": "#2f8132", "late": "#b45309", "down": "#c62828"}
SHIELDS_COLOURS = {"up": "success", "late": "important", "down": "critical"}
CHAR_WIDTH = 7.0  # px per character of 11px Verdana, near enough for a badge
SIGNATURE_LENGTH = 8


def _mac(secret: str, purpose: str, subject: str, length: int) -> str:
    message = f"{purpose}:{subject}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


def instance_key(secret: str) -> str:
    """The `<key>` of group badge URLs: names this instance's badges, opens nothing."""
    return _mac(secret, "badge-instance", "", 22)


def signature(secret: str, tag: str | None) -> str:
    """Signs one tag's badge (None: every check's). 8 characters, as Healthchecks': 48 bits
    that no one can find by asking, one guess a request."""
    return _mac(secret, "badge-tag", tag or "", SIGNATURE_LENGTH)  # "" is all checks


def check_key(secret: str, check: Check) -> str:
    """Stable for the check's life: its id, not its UUID, so rotating the ping URL keeps it;
    with its creation time, so a new check that reuses a deleted one's id gets its own."""
    return _mac(secret, "badge-check", f"{check.id}:{check.created!r}", 22)


def badge_urls(
    secret: str, tag: str | None, with_late: bool = False, root: str = ""
) -> dict[str, str]:
    """URLs of the tag's (or every check's) badge, by format; two-state unless `with_late`."""
    base = f"{root}/badge/{instance_key(secret)}/{signature(secret, tag)}"
    stem = base if with_late else f"{base}-2"
    if tag:
        stem += f"/{quote(tag, safe='')}"
    return {fmt: f"{stem}.{fmt}" for fmt in FORMATS}


def check_badge_urls(secret: str, check: Check, root: str = "") -> dict[str, str]:
    return {fmt: f"{root}/b/2/{check_key(secret, check)}.{fmt}" for fmt in FORMATS}


def overall(checks: Iterable[Check], now: float, with_late: bool) -> dict[str, object]:
    """Healthchecks' JSON badge: any down makes it down; late counts as up in two-state form."""
    total = grace = down = 0
    for check in checks:
        total += 1
        status = status_at(check, now)
        down += status == Status.DOWN
        grace += status == Status.GRACE
    word = "down" if down else ("late" if grace and with_late else "up")
    return {"status": word, "total": total, "grace": grace, "down": down}


def _respond(
    request: web.Request, label: str, summary: dict[str, object], fmt: str
) -> web.Response:
    word = str(summary["status"])
    headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
    if fmt == "json":
        return web.json_response(summary, headers=headers)
    if fmt == "shields":
        shields = {"schemaVersion": 1, "label": label, "message": word,
                   "color": SHIELDS_COLOURS[word]}  # fmt: skip
        return web.json_response(shields, headers=headers)
    left = round(len(label) * CHAR_WIDTH + 12)
    right = round(len(word) * CHAR_WIDTH + 12)
    svg = (
        request.app[TEMPLATES]
        .get_template("badge.svg")
        .render(label=label, word=word, left=left, right=right, colour=COLOURS[word])
    )
    return web.Response(text=svg, content_type="image/svg+xml", headers=headers)


def _split(name: str) -> tuple[str, str]:
    stem, _, fmt = name.rpartition(".")
    if fmt not in FORMATS or not stem:
        raise NotFound()
    return stem, fmt


@routes.get("/badge/{key}/{rest:.+}")
@plain_errors
async def group_badge(request: web.Request) -> web.Response:
    """Every check's badge (`<sig>.<fmt>`) or one tag's (`<sig>/<tag>.<fmt>`)."""
    store = request.app[STORE]
    secret = await store.badge_secret()
    sig, _, tagged = request.match_info["rest"].partition("/")
    if not tagged:
        sig, fmt = _split(sig)
        tag = None
    else:
        tag, fmt = _split(tagged)
    # By length, not by suffix: a signature is base64url and may itself end in "-2".
    with_late = len(sig) == SIGNATURE_LENGTH
    if not (
        _same(request.match_info["key"], instance_key(secret))
        and _same(sig if with_late else sig.removesuffix("-2"), signature(secret, tag))
    ):
        raise NotFound()
    checks = await store.list_checks()
    if tag is not None:
        checks = [c for c in checks if tag in c.tags.split()]
        if not checks:
            raise NotFound()
    summary = overall(checks, request.app[CLOCK].now(), with_late)
    return _respond(request, tag or "checks", summary, fmt)


@routes.get("/b/{states:[23]}/{name}")
@plain_errors
async def check_badge(request: web.Request) -> web.Response:
    store = request.app[STORE]
    secret = await store.badge_secret()
    key, fmt = _split(request.match_info["name"])
    for check in await store.list_checks():
        if _same(check_key(secret, check), key):
            with_late = request.match_info["states"] == "3"
            summary = overall([check], request.app[CLOCK].now(), with_late)
            return _respond(request, check.name, summary, fmt)
    raise NotFound()


def _same(given: str, expected: str) -> bool:
    """In time that does not depend on how much of `given` is right."""
    return hmac.compare_digest(given.encode(), expected.encode())
