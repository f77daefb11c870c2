"""Errors that carry their HTTP status, and the one middleware that renders them.

Handlers and the store raise; nothing else builds error responses. Bodies are the plain-text
phrases of the Healthchecks ping protocol, because clients match on them ("not found").
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("heartbeatd.web")


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


class Conflict(HeartbeatdError):
    status = 409
    text = "conflict"


class Unavailable(HeartbeatdError):
    """The database cannot take the write (disk full, read-only, locked): say 503, never OK."""

    status = 503
    text = "service unavailable"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HeartbeatdError as e:
        return web.Response(status=e.status, text=e.text, headers=_cors(request))
    except web.HTTPException as e:
        if e.status == 404:
            return web.Response(status=404, text=NotFound.text)
        raise
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.rel_url.path[:6])
        return web.Response(status=500, text=HeartbeatdError.text)


def _cors(request: web.Request) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*"} if request.path.startswith("/ping/") else {}
