"""Monitoring the monitor: heartbeatd's own heartbeat, its downtime, and its ping elsewhere.

A dead-man's switch that is itself dead alerts no one, and after it comes back it cannot know
which pings it missed. So it does three things about itself: it writes a heartbeat (`alive_at`
in the meta table) every minute and at a clean stop, so the next start knows how long it was
away (to within a minute) and alerts can say so; and, when `self_ping_url` is set, it pings
another monitor, which alerts when heartbeatd stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from heartbeatd import __version__
from heartbeatd.core.clock import Clock
from heartbeatd.core.durations import format_elapsed
from heartbeatd.core.errors import HeartbeatdError
from heartbeatd.core.redact import host as host_of
from heartbeatd.notify import iso
from heartbeatd.store import Store

log = logging.getLogger("heartbeatd.selfmon")

HEARTBEAT_EVERY = 60.0
SELF_PING_TIMEOUT = 10.0


class SelfMonitor:
    def __init__(
        self, store: Store, clock: Clock, ping_url: str = "", ping_every: float = 60.0
    ) -> None:
        self._store = store
        self._clock = clock
        self._ping_url = ping_url
        self._ping_every = ping_every
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.self_ping_ok = True  # the log says when this changes, not on every ping

    async def start(self) -> tuple[float, float] | None:
        """Record this start; return (and log) the window heartbeatd was down before it."""
        window = await self._store.record_start(self._clock.now())
        if window is not None:
            log.warning("heartbeatd was down %s", describe_downtime(window))
        self._tasks.append(self._every(HEARTBEAT_EVERY, self._heartbeat, "heartbeat"))
        if self._ping_url:  # at once too: the other monitor learns at once that we are back
            self._tasks.append(self._every(self._ping_every, self._self_ping, "self-ping", True))
        return window

    async def stop(self) -> None:
        """Stop, and write a last heartbeat so the next start measures the real downtime."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        await self._heartbeat()

    def _every(
        self,
        seconds: float,
        action: Callable[[], Awaitable[None]],
        name: str,
        at_once: bool = False,
    ) -> asyncio.Task[None]:
        async def loop() -> None:
            due = self._clock.monotonic()  # a steady cadence: an action's own time is not added
            if at_once:
                await action()
            while not self._stop.is_set():
                due = max(due + seconds, self._clock.monotonic())  # after a stall: no burst
                await self._clock.sleep(due - self._clock.monotonic(), self._stop)
                if not self._stop.is_set():
                    await action()

        return asyncio.create_task(loop(), name=f"heartbeatd-{name}")

    async def _heartbeat(self) -> None:
        try:
            await self._store.mark_alive(self._clock.now())
        except HeartbeatdError as e:
            log.warning("cannot record heartbeatd's own heartbeat: %s", e.text)

    async def _self_ping(self) -> None:
        failure = await self._ping_once()
        host = host_of(self._ping_url)  # the path may be a secret
        if failure is not None and self.self_ping_ok:
            log.error("self-ping to %s failing: %s", host, failure)
        elif failure is None and not self.self_ping_ok:
            log.warning("self-ping to %s works again", host)
        self.self_ping_ok = failure is None

    async def _ping_once(self) -> str | None:
        """None when the other monitor took the ping, else what went wrong."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"heartbeatd/{__version__}"}
            )
        timeout = aiohttp.ClientTimeout(total=min(SELF_PING_TIMEOUT, self._ping_every))
        try:
            async with self._session.get(self._ping_url, timeout=timeout) as response:
                await response.read()
        except TimeoutError:
            return "no answer in time"
        except aiohttp.ClientConnectorError as e:
            return f"cannot connect: {e.os_error.strerror or e}"
        except aiohttp.ClientError as e:
            return type(e).__name__
        return None if response.status < 300 else f"HTTP {response.status}"


def describe_downtime(window: tuple[float, float]) -> str:
    """`from 2026-01-01T03:00:00+00:00 to 2026-01-01T03:12:00+00:00 (12m)`."""
    began, ended = window
    return f"from {iso(began)} to {iso(ended)} ({format_elapsed(ended - began)})"


SELFMON = web.AppKey("selfmon", SelfMonitor)
