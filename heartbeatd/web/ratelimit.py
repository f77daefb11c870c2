"""Per-source rate limit on 404s: a client guessing ping URLs is slowed down, nobody else is.

A token bucket per client address (the one ping.client_address believes, so X-Forwarded-For
counts only from trusted proxies), charged only when the answer is 404. A source that has
spent its bucket gets 429 for everything until it refills, without its request being looked
up: a flood of guesses costs the database nothing, so it does not queue other clients' pings
behind it. Each refused request still costs its HTTP parsing (about 0.2 ms of CPU), so
refusals are held and answered one at a time, REFUSAL_RATE a second per source: a flood waits
for its answers before sending more, so its rate falls to REFUSAL_RATE whatever its number of
connections, and its requests come one by one rather than all at once. (Holding each refusal
until the source's next token let 32 connections wake together: 32 parses in one turn of the
loop, ~9 ms that other clients' pings waited.) Closing the connection instead cost us more
(the flood reconnects; the accept and handshake are ours to pay too).
A source still in tokens but plainly guessing (a quarter of its burst spent: GUESSING_BELOW) has its
requests looked up one at a time, for the same reason: without that, a flood of 32 connections
spent its burst in rounds of 32 lookups and 404s at once, each round several milliseconds that
other clients' pings waited behind.
Correct pings never spend tokens: a job that pings real URLs is never limited, however often.
IPv6 sources are keyed by their /64, which one host usually holds whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import math
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from heartbeatd.core.errors import TooManyRequests
from heartbeatd.web.keys import CLOCK, CONFIG
from heartbeatd.web.ping import client_address

MISS_RATE = 20.0  # 404s per second a source may keep up
MISS_BURST = 100.0  # 404s a source may send at once
MAX_SOURCES = 10_000  # buckets kept; full ones are dropped first
REFUSAL_RATE = 100.0  # 429s per second answered to one source
MAX_HOLD = 5.0  # longest a refusal is held, however many connections a source has
GUESSING_BELOW = 0.75  # share of its burst left under which a source's requests take turns


class MissLimiter:
    """Token buckets by source; time is the caller's monotonic clock."""

    def __init__(
        self, rate: float = MISS_RATE, burst: float = MISS_BURST, max_sources: int = MAX_SOURCES
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)
        self._next_refusal: dict[str, float] = {}  # source -> when its next 429 may go out
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # source -> (lock, its users)

    def __bool__(self) -> bool:
        """False while no source has missed lately: the hot path then skips the lookup."""
        return bool(self._buckets)

    def __contains__(self, source: object) -> bool:
        return source in self._buckets

    def wait(self, source: str, now: float) -> float:
        """0 if `source` may be answered now, else the seconds until its next token."""
        tokens = self._tokens(source, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def guessing(self, source: str, now: float) -> bool:
        """Whether `source` has missed so often lately that its requests should take turns."""
        return self._tokens(source, now) < GUESSING_BELOW * self.burst

    @contextlib.asynccontextmanager
    async def turn(self, source: str) -> AsyncIterator[None]:
        """One request of `source` at a time; the lock goes once nobody holds or awaits it."""
        lock, users = self._turns.get(source, (asyncio.Lock(), 0))
        self._turns[source] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[source]
            if users == 1:
                del self._turns[source]
            else:
                self._turns[source] = (lock, users - 1)

    def hold(self, source: str, now: float) -> float:
        """How long to hold a refusal to `source` so that its refusals go out one at a time,
        1 / REFUSAL_RATE apart. `now` is the event loop's clock: the hold is a real sleep.
        Login refusals (login_limit.py) are paced here too, with the source's 404 refusals."""
        at = min(max(now, self._next_refusal.get(source, now)) + 1 / REFUSAL_RATE, now + MAX_HOLD)
        if source not in self._next_refusal and len(self._next_refusal) >= self.max_sources:
            self._next_refusal = {s: t for s, t in self._next_refusal.items() if t > now}
        self._next_refusal[source] = at
        return at - now

    def charge(self, source: str, now: float) -> None:
        """Spend one token for a 404. The bucket may go into debt, down to -burst: requests
        in flight at once all pass the check on the last token, and a flood's debt keeps it
        out until it is paid back, so in the long run it gets `rate` 404s a second."""
        if source not in self._buckets and len(self._buckets) >= self.max_sources:
            self._forget_idle(now)
        self._buckets[source] = (max(-self.burst, self._tokens(source, now) - 1), now)

    def _tokens(self, source: str, now: float) -> float:
        tokens, when = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def _forget_idle(self, now: float) -> None:
        """Drop refilled buckets; if every source is still busy, the half idle longest."""
        self._buckets = {
            s: b for s, b in self._buckets.items() if self._tokens(s, now) < self.burst
        }
        if len(self._buckets) >= self.max_sources:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(by_age[len(by_age) // 2 :])
        self._next_refusal = {s: t for s, t in self._next_refusal.items() if s in self._buckets}


MISS_LIMITER = web.AppKey("miss_limiter", MissLimiter)


def source_of(request: web.Request) -> str:
    """The rate-limit key for a request: its client address, an IPv6 one cut to its /64."""
    trusted = request.app[CONFIG].trusted_proxies
    return bucket_key(
        client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
    )


@functools.lru_cache(maxsize=4096)
def bucket_key(address: str) -> str:
    """Parsing the address costs more than the rest of the limiter: a pinger's is cached."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@web.middleware
async def limit_misses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 429 to a source out of tokens; charge it for every 404 it gets.

    Only 404s spend tokens, charged once answered: a source's correct pings never wait for a
    token, however many it has in flight (a reservation per request refused the pings of 500
    concurrent connections from an address that had once mistyped a URL).
    """
    limiter = request.app[MISS_LIMITER]
    source = source_of(request) if limiter else None
    if source is not None and source in limiter:
        if limiter.guessing(source, request.app[CLOCK].monotonic()):
            async with limiter.turn(source):
                return await _refused_or_answered(request, handler, source)
        return await _refused_or_answered(request, handler, source)
    return await _answered(request, handler, source)


async def _refused_or_answered(
    request: web.Request, handler: Handler, source: str
) -> web.StreamResponse:
    """429 if `source` is out of tokens, held so its refusals go out one at a time."""
    limiter = request.app[MISS_LIMITER]
    wait = limiter.wait(source, request.app[CLOCK].monotonic())
    if wait > 0:
        await asyncio.sleep(limiter.hold(source, asyncio.get_running_loop().time()))
        return web.Response(
            status=TooManyRequests.status,
            text=TooManyRequests.text,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    return await _answered(request, handler, source)


async def _answered(
    request: web.Request, handler: Handler, source: str | None
) -> web.StreamResponse:
    """The handler's answer; a 404 is charged to its source."""
    limiter = request.app[MISS_LIMITER]
    clock = request.app[CLOCK]
    missed = False
    try:
        response = await handler(request)
        missed = response.status == 404
    except web.HTTPNotFound:
        missed = True
        raise
    finally:
        if missed:
            limiter.charge(source or source_of(request), clock.monotonic())
    return response
