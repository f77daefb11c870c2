"""The only place heartbeatd reads the time.

Wall time (epoch seconds) is what pings, deadlines and flips are recorded in; monotonic time is
what the timer wheel waits in, so a wall-clock jump neither fires every deadline at once nor
loses one. Tests use ManualClock to move both without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, epoch seconds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Return after `seconds` of monotonic time, or as soon as `wake` is set."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        # Not asyncio.wait_for: on 3.11 it swallows a cancel that arrives in the same loop
        # turn as `wake`, and shutdown would then wait for the next deadline (up to an hour).
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([waiter], timeout=max(seconds, 0))
        finally:
            waiter.cancel()


class ManualClock:
    """A clock that moves only when a test says so; sleepers wake as it passes their deadline."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass on both clocks."""
        self._wall += seconds
        self._mono += seconds
        for until, fut in self._sleepers:
            if until <= self._mono and not fut.done():
                fut.set_result(None)
        self._sleepers = [(u, f) for u, f in self._sleepers if not f.done()]

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock, as an NTP step or a mis-set clock does."""
        self._wall += seconds

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        fut = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            fut.set_result(None)
        self._sleepers.append((self._mono + seconds, fut))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([fut, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not fut.done():
                fut.cancel()
