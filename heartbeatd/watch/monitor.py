"""Watches every check's going-down moment with the timer wheel, and acts when one passes.

The wheel runs on monotonic time, so a wall-clock step neither fires every deadline at once nor
loses one. It is only an index: when an entry fires, store.expire decides against the stored
check whether the moment is still that check's, so a stale entry (a ping, pause or removal since
it was armed) does nothing but re-arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from heartbeatd.core.clock import Clock
from heartbeatd.core.wheel import TimerWheel
from heartbeatd.store import Store

log = logging.getLogger("heartbeatd.monitor")

Key = int | tuple[str, int]  # a check's id, or ("late", id) for when it turns late
TICK = 0.01
# Checks taken down per write: a storm's flips (~60 us each) then fill the writer's background
# batches in pieces of a quarter millisecond, so no batch holds the loop, and every ping
# waiting for it, for milliseconds (16 a chunk left the storm's worst pings at 6-9 ms).
EXPIRE_CHUNK = 4
IDLE_SLEEP = 3600.0


class Monitor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        startup_grace: float | None,
        on_notify: Callable[[], None],
        watch_late: bool = False,
    ) -> None:
        self._store = store
        self._clock = clock
        self._startup_grace = startup_grace
        self._on_notify = on_notify
        self._watch_late = watch_late  # some notifier wants `late` events
        self._started_at = 0.0
        self._wheel: TimerWheel[Key] = TimerWheel(0.0, TICK)
        self._expected: dict[Key, float] = {}
        self._due: dict[Key, float] = {}  # the monotonic time each key was armed for
        self._wake = asyncio.Event()
        self._resync = False
        self._task: asyncio.Task[None] | None = None
        self._passes = 0

    def __len__(self) -> int:
        """How many checks are watched (late moments are extra wheel entries)."""
        return sum(1 for key in self._expected if isinstance(key, int))

    async def start(self) -> None:
        """Arm the wheel from the database, then watch it."""
        self._started_at = self._clock.now()
        await self._rebuild()
        self._task = asyncio.create_task(self._run(), name="heartbeatd-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def arm(self, check_id: int, alert_after: float | None, late_at: float | None = None) -> None:
        """Watch for `alert_after` (wall time); None stops watching the check. `late_at`, when
        a notifier wants late events, is when the check enters its grace."""
        self._set(check_id, alert_after)
        if self._watch_late:
            self._set(("late", check_id), late_at)

    def _set(self, key: Key, moment: float | None) -> None:
        if moment is None:
            self._wheel.cancel(key)
            self._expected.pop(key, None)
            self._due.pop(key, None)
            return
        self._schedule(key, moment, self._to_monotonic(moment))
        self._wake.set()

    def _schedule(self, key: Key, moment: float, due: float) -> None:
        self._expected[key] = moment
        self._due[key] = due
        self._wheel.schedule(key, due)

    def request_resync(self) -> None:
        """Another process changed the database: re-read every armed check."""
        self._resync = True
        self._wake.set()

    async def settled(self) -> None:
        """Return once the monitor has looked at the clock since this call (for tests)."""
        target = self._passes + 2
        while self._passes < target:
            self._wake.set()
            await asyncio.sleep(0)

    def _to_monotonic(self, wall: float) -> float:
        return self._clock.monotonic() + (wall - self._clock.now())

    async def _rebuild(self) -> None:
        """Arm every check with a going-down moment, holding back ones missed while we were down.

        A check whose moment passed before start-up may have been pinged into the void while
        heartbeatd was not listening, so it gets `startup_grace` (default: its own grace) from
        start-up to ping before it is alerted. Checks already down stay down without a new alert.
        """
        armed = await self._store.armed()
        kept = {key: (self._expected[key], due) for key, due in self._due.items()}
        self._wheel = TimerWheel(self._clock.monotonic(), TICK)
        self._expected.clear()
        self._due.clear()
        for check_id, alert_after, grace in armed:
            due = alert_after
            if alert_after < self._started_at:
                hold = self._startup_grace if self._startup_grace is not None else grace
                due = max(alert_after, self._started_at + hold)
            self._schedule(
                check_id, alert_after, self._kept_or_mapped(kept, check_id, alert_after, due)
            )
        if self._watch_late:  # a moment passed while we were stopped is stale news: skip it
            for check_id, late_at in await self._store.late_moments():
                if late_at >= self._started_at:
                    key = ("late", check_id)
                    self._schedule(key, late_at, self._kept_or_mapped(kept, key, late_at, late_at))

    def _kept_or_mapped(
        self, kept: dict[Key, tuple[float, float]], key: Key, moment: float, wall_due: float
    ) -> float:
        """The monotonic time for a moment being re-armed by a rebuild.

        A moment that was armed before keeps its monotonic time: mapping it again through a
        wall clock that has stepped since would fire it early (every check at once after a
        step forward) or an hour late (after a step back). Only new moments are mapped.
        """
        before = kept.get(key)
        if before is not None and before[0] == moment:
            return before[1]
        return self._to_monotonic(wall_due)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if self._resync:
                    self._resync = False
                    await self._rebuild()
                await self._fire_due()
            except Exception:
                log.exception("monitor pass failed; retrying in 1s")
                await asyncio.sleep(1)
            self._passes += 1
            next_due = self._wheel.next_due()
            delay = IDLE_SLEEP if next_due is None else next_due - self._clock.monotonic()
            await self._clock.sleep(delay, self._wake)

    async def _fire_due(self) -> None:
        fired = self._wheel.advance(self._clock.monotonic())
        if not fired:
            return
        for key in fired:
            self._due.pop(key, None)
        due = [(key, self._expected.pop(key)) for key in fired if isinstance(key, int)]
        late = [(key[1], self._expected.pop(key)) for key in fired if isinstance(key, tuple)]
        notify = bool(late) and await self._store.note_late(late, self._clock.now())
        now = self._clock.now()
        chunks = [due[i : i + EXPIRE_CHUNK] for i in range(0, len(due), EXPIRE_CHUNK)]
        expired = await asyncio.gather(*(self._store.expire(chunk, now) for chunk in chunks))
        rearm = [moment for chunk_rearm, _ in expired for moment in chunk_rearm]
        notify = notify or any(queued for _, queued in expired)
        for check_id, alert_after in rearm:
            if alert_after is not None and check_id not in self._wheel:
                self.arm(check_id, alert_after)
        if notify:
            self._on_notify()
