"""Request bodies are read against the clock, so a client cannot hold a connection by sending
one slowly.

aiohttp bounds the wait for a request's headers (server.py) but not for its body: a handler
reading one waits as long as the client keeps sending, so a body sent at a byte a second held
its connection, its file descriptor and its handler for as long as the client liked. Every
route that reads a body reads it inside `paced`, which allows GRACE seconds for the first
bytes, one second more for each MIN_RATE bytes received, and never more than TOTAL in all
(Apache's mod_reqtimeout counts the same way; its default is body=20,MinRate=500). A client
that falls behind gets 408 with Connection: close, as RFC 9110 asks; aiohttp drops what it
still sends for up to server.LINGER seconds and closes. A byte a second, measured against
`heartbeatd serve`: 408 after 10.0 s, closed after 15.0 s.

The figures, for a ping's body (at most ping_body_limit, 100 kB by default, is kept):
- MIN_RATE 500 bytes/s (4 kbit/s): a tenth of GPRS, the slowest mobile data still in use
  (~40 kbit/s). A client on any real link is never cut for its pace; a trickle is.
- GRACE 10 s: a phone on a bad link that stalls for a few seconds before its first bytes, or a
  TCP retransmission or two (1 s, then 2 s), still gets through.
- TOTAL 60 s: 100 kB at 2 kB/s (16 kbit/s, below GPRS) takes 50 s and gets in. It bounds a
  body of any size: past ping_body_limit a ping's body is read only to be dropped, so a 10 MB
  log over a 1 Mbit/s uplink (80 s) now gets 408 where it used to be cut to the limit.
A 1 byte/s trickle is cut after GRACE plus its few bytes' allowance: about 10 s. The longest a
client can hold a connection with a body is TOTAL, and only by sending MIN_RATE bytes a
second all along, which is bandwidth, not a byte now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from heartbeatd.core.errors import BadRequest

GRACE = 10.0
MIN_RATE = 500.0
TOTAL = 60.0
CHUNK = 64 * 1024


def deadline(started: float, received: int) -> float:
    """When a body begun at `started`, `received` bytes of it in so far, has been too slow."""
    return started + min(TOTAL, GRACE + received / MIN_RATE)


def too_slow() -> web.HTTPRequestTimeout:
    """408, raised past the handler's own error handling to aiohttp, which sends it; the
    connection is not kept for another request after a body this slow."""
    answer = web.HTTPRequestTimeout(text="request body too slow")
    answer.force_close()
    return answer


@contextlib.asynccontextmanager
async def paced(request: web.Request) -> AsyncIterator[None]:
    """Read the request's body inside this: it is cut off with 408 once the client falls
    behind the pace above. Whatever does the reading (a loop over chunks, request.post()), the
    pace is judged from the bytes aiohttp has received, looked at only when a deadline falls
    due, so a body that arrives in time costs one timer: about 10 us, measured, and 3 us for
    one already in."""
    content = request.content
    if content.is_eof():  # all of it is in already: a small body often comes with its headers
        yield
        return
    loop = asyncio.get_running_loop()
    started = loop.time()
    timer = asyncio.timeout(None)
    look: asyncio.TimerHandle | None = None

    def judge() -> None:
        nonlocal look
        due = deadline(started, content.total_bytes)
        if due > loop.time():
            look = loop.call_at(due, judge)
        else:
            timer.reschedule(loop.time())

    try:
        async with timer:
            judge()
            try:
                yield
            finally:
                if look is not None:
                    look.cancel()
    except TimeoutError:
        if timer.expired():
            raise too_slow() from None
        raise


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole body, read at the pace above; None once it passes `limit` bytes (a declared
    length past it is refused unread), so an oversized body costs at most `limit` bytes of
    memory. Each caller answers None with its own 413. A body that breaks off or will not
    decode (bad chunking, bad gzip, the client hung up) is the client's mistake: 400."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with paced(request):
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except (web.RequestPayloadError, ConnectionResetError):
        raise BadRequest("invalid request body") from None
    return b"".join(chunks)
