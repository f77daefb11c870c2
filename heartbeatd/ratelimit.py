"""Per-source rate limit on 404s: a client guessing ping URLs is slowed down, nobody else is.

A token bucket per client address (the one ping.client_address believes, so X-Forwarded-For
counts only from trusted proxies), charged only when the answer is 404. A source that has
spent its bucket gets 429 for everything until it refills, without its request being looked
up: a flood of guesses costs the database nothing, so it does not queue other clients' pings
behind it (each refused request still costs its HTTP parsing, about 0.2 ms of CPU).
Correct pings never spend tokens: a job that pings real URLs is never limited, however often.
IPv6 sources are keyed by their /64, which one host usually holds whole.
"""

from __future__ import annotations

import ipaddress
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from heartbeatd.errors import TooManyRequests
from heartbeatd.ping import client_address
from heartbeatd.web_keys import CLOCK, CONFIG

MISS_RATE = 20.0  # 404s per second a source may keep up
MISS_BURST = 100.0  # 404s a source may send at once
MAX_SOURCES = 10_000  # buckets kept; full ones are dropped first


class MissLimiter:
    """Token buckets by source; time is the caller's monotonic clock."""

    def __init__(
        self, rate: float = MISS_RATE, burst: float = MISS_BURST, max_sources: int = MAX_SOURCES
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)

    def __bool__(self) -> bool:
        """False while no source has missed lately: the hot path then skips the lookup."""
        return bool(self._buckets)

    def __contains__(self, source: object) -> bool:
        return source in self._buckets

    def take(self, source: str, now: float) -> float:
        """Reserve a token for a request from `source` before it is handled: 0 when taken,
        else the seconds until one is there. Reserving, not charging afterwards, is what
        keeps many requests in flight at once from all slipping through on the last token."""
        tokens = self._tokens(source, now)
        if tokens < 1:
            return (1 - tokens) / self.rate
        self._buckets[source] = (tokens - 1, now)
        return 0.0

    def give_back(self, source: str, now: float) -> None:
        """The reserved request was not a miss."""
        self._buckets[source] = (min(self.burst, self._tokens(source, now) + 1), now)

    def charge(self, source: str, now: float) -> None:
        """Spend one token for a 404 answered to a source that had none reserved."""
        if source not in self._buckets and len(self._buckets) >= self.max_sources:
            self._forget_idle(now)
        self._buckets[source] = (max(0.0, self._tokens(source, now) - 1), now)

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


MISS_LIMITER = web.AppKey("miss_limiter", MissLimiter)


def source_of(request: web.Request) -> str:
    """The rate-limit key for a request: its client address, an IPv6 one cut to its /64."""
    trusted = request.app[CONFIG].trusted_proxies
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
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

    A source that has missed before has a token reserved per request, given back unless the
    answer is 404; one that has not is charged after its first miss.
    """
    limiter = request.app[MISS_LIMITER]
    clock = request.app[CLOCK]
    source = source_of(request) if limiter else None
    reserved = source is not None and source in limiter
    if source is not None and reserved:
        wait = limiter.take(source, clock.monotonic())
        if wait > 0:
            return web.Response(
                status=TooManyRequests.status,
                text=TooManyRequests.text,
                headers={"Retry-After": str(math.ceil(wait))},
            )
    missed = False
    try:
        response = await handler(request)
        missed = response.status == 404
    except web.HTTPNotFound:
        missed = True
        raise
    finally:
        if source is not None and reserved and not missed:
            limiter.give_back(source, clock.monotonic())
        elif missed and not reserved:
            limiter.charge(source or source_of(request), clock.monotonic())
    return response
