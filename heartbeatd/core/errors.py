"""Errors that carry their HTTP status, and the decorator that renders them.

Handlers and the store raise; nothing else builds error responses. Bodies are the plain-text
phrases of the Healthchecks ping protocol, because clients match on them ("not found").
"""

from __future__ import annotations

import functools

from aiohttp import web
from aiohttp.typedefs import Handler


class HeartbeatdError(Exception):
    status = 500
    text = "internal error"

    def __init__(self, text: str | None = None) -> None:
        super().__init__(text or self.text)
        if text:
            self.text = text


class BadRequest(HeartbeatdError):
    status = 400
    text = "bad request"


class NotFound(HeartbeatdError):
    status = 404
    text = "not found"


class Forbidden(HeartbeatdError):
    status = 403
    text = "forbidden"


class Conflict(HeartbeatdError):
    status = 409
    text = "conflict"


class TooManyRequests(HeartbeatdError):
    """A source guessing URLs has spent its 404 budget (ratelimit.py)."""

    status = 429
    text = "rate limited"


class Unavailable(HeartbeatdError):
    """The database cannot take the write (disk full, read-only, locked): say 503, never OK."""

    status = 503
    text = "service unavailable"


def plain_errors(handler: Handler) -> Handler:
    """Render HeartbeatdError as its status and phrase; wraps each handler.

    A decorator rather than a middleware: aiohttp builds the middleware chain on every request,
    which costs the ping path a few per cent of its throughput.
    """

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HeartbeatdError as e:
            return web.Response(status=e.status, text=e.text, headers=_cors(request))

    return handle


async def not_found(request: web.Request) -> web.StreamResponse:
    """Every URL no route claims: the same plain 404 as an unknown ping token."""
    return web.Response(status=404, text=NotFound.text, headers=_cors(request))


def _cors(request: web.Request) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*"} if request.path.startswith("/ping/") else {}
