"""Every change to a check, from every door: a ping, the API, the status page, a reload.

Each is three steps in one order: write it (the store commits it, with its flip and outbox rows),
tell the monitor the check's new deadlines, and wake the dispatcher if the write queued a
notification. Written out by each caller, a new door could write and forget to arm, and the
check would never go down; here it is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from heartbeatd.core.clock import Clock
from heartbeatd.core.model import Check, CheckDefinition, Flip, late_at
from heartbeatd.store import BySlug, ByUuid, PingIn, PingResult, Store
from heartbeatd.watch.monitor import Monitor

Build = Callable[[Check | None], CheckDefinition]


class Checks:
    """The store's writes to checks, each followed by what the monitor and dispatcher must
    know. Reads go to the store directly."""

    def __init__(
        self, store: Store, monitor: Monitor, wake: Callable[[], None], clock: Clock
    ) -> None:
        self.store = store
        self.monitor = monitor
        self.wake = wake
        self.clock = clock

    async def ping(self, target: ByUuid | BySlug, incoming: PingIn) -> PingResult:
        """Record a ping (any URL form); returns once it is on disk, NotFound if unknown."""
        result = await self.store.record_ping(target, incoming, self.clock.now())
        self.monitor.arm(result.check_id, result.alert_after, result.late_at)
        if result.notify:
            self.wake()
        return result

    async def add(self, definition: CheckDefinition, actor: str) -> Check:
        return self._armed(await self.store.add_check(definition, self.clock.now(), actor))

    async def upsert(
        self, unique: Mapping[str, Any], build: Build, actor: str
    ) -> tuple[Check, bool]:
        """The first check whose columns equal `unique`, changed, or a new one (True)."""
        check, created = await self.store.upsert_check(unique, build, self.clock.now(), actor)
        return self._armed(check), created

    async def update(self, ref: str, build: Build, actor: str) -> Check:
        return self._armed(await self.store.update_check(ref, build, self.clock.now(), actor))

    async def change_state(
        self, ref: str, change: Callable[[Check, float], Flip | None], actor: str
    ) -> tuple[Check, Flip | None]:
        """A person's pause or resume; the flip, if any, notifies no one."""
        check, flip = await self.store.change_state(ref, change, self.clock.now(), actor)
        return self._armed(check), flip

    async def snooze(
        self, target: ByUuid | BySlug | str, seconds: float, reason: str, actor: str | None
    ) -> Check:
        """Silence a check's alerts for `seconds` from now (0 lifts its snooze); held alerts
        are settled at once by the dispatcher, which the write wakes."""
        now = self.clock.now()
        check = await self.store.snooze(target, now + seconds, reason, now, actor)
        self.wake()
        return check

    async def rotate(self, ref: str, actor: str) -> Check:
        """A new UUID; the check's deadlines stay as they were."""
        return await self.store.rotate(ref, actor, self.clock.now())

    async def remove(self, ref: str, actor: str) -> Check:
        removed = await self.store.remove(ref, actor, self.clock.now())
        self.monitor.arm(removed.id, None, None)
        return removed

    async def reconcile(self, definitions: Iterable[CheckDefinition]) -> list[str]:
        """The config file's checks made so in the database; what changed, in words. The
        monitor then re-reads every deadline: changed schedules re-arm, removed checks go."""
        changes = await self.store.reconcile(definitions, self.clock.now())
        self.monitor.request_resync()
        return changes

    def _armed(self, check: Check) -> Check:
        self.monitor.arm(check.id, check.alert_after, late_at(check))
        return check
