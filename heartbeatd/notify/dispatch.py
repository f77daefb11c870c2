"""Delivers the outbox: at least once, with backoff, never in the way of pings.

Outbox rows are written in the same transaction as their flip, so an alert exists as soon as the
flip does. This worker sends due rows concurrently (each notifier at most a few at a time, so one
slow target cannot hold up the others), then records the outcome. A crash between sending and
recording means one resend after restart: the documented at-least-once case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from heartbeatd.clock import Clock
from heartbeatd.notify import Event, Notifier, NotifyError
from heartbeatd.store import OutboxItem, Store

log = logging.getLogger("heartbeatd.notify")

BACKOFF_FIRST = 5.0
BACKOFF_MAX = 3600.0
MAX_ATTEMPTS = 20  # about 11 hours of trying before giving up
PER_NOTIFIER = 8  # deliveries at once per notifier
REFILL_BELOW = 50  # read more due rows once fewer than this are in flight


def retry_delay(attempts: int) -> float:
    """5 s, 10 s, 20 s … capped at an hour: quick for a blip, gentle on a dead target."""
    return min(BACKOFF_FIRST * 2**attempts, BACKOFF_MAX)


class Dispatcher:
    def __init__(
        self, store: Store, notifiers: Mapping[str, Notifier], clock: Clock, site_url: str
    ) -> None:
        self._store = store
        self._notifiers = notifiers
        self._clock = clock
        self._site_url = site_url
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._limits = {name: asyncio.Semaphore(PER_NOTIFIER) for name in notifiers}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeatd-dispatch")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        for notifier in self._notifiers.values():
            await notifier.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._start_due()
                delay = await self._until_next()
            except Exception:
                log.exception("reading the outbox failed; trying again in 5s")
                delay = 5.0
            await self._clock.sleep(delay, self._wake)

    async def _start_due(self) -> None:
        for item in await self._store.due_notifications(self._clock.now()):
            if item.id not in self._in_flight:
                task = asyncio.create_task(self._deliver(item))
                self._in_flight[item.id] = task

    async def _until_next(self) -> float:
        next_at = await self._store.next_notification_at()
        if next_at is None:
            return 3600.0
        delay = next_at - self._clock.now()
        # A due row still in flight wakes us when it finishes; do not spin on it meanwhile.
        return delay if delay > 0 else 1.0

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            notifier = self._notifiers.get(item.notifier)
            if notifier is None:
                await self._store.notification_failed(
                    item.id, f"no notifier named {item.notifier!r} in the config", None
                )
                return
            async with self._limits[item.notifier]:
                await self._attempt(notifier, item)
        except Exception:
            log.exception("recording notification %d failed", item.id)
        finally:
            self._in_flight.pop(item.id, None)
            if len(self._in_flight) < REFILL_BELOW:
                self._wake.set()

    async def _attempt(self, notifier: Notifier, item: OutboxItem) -> None:
        event = self._event(item)
        started = self._clock.monotonic()
        try:
            await asyncio.wait_for(notifier.send(event), timeout=notifier.timeout)
        except (NotifyError, TimeoutError, OSError) as e:
            await self._record_failure(item, e)
            return
        await self._store.notification_sent(item.id, self._clock.now())
        took = self._clock.monotonic() - started
        log.info("%s: %s sent for %s in %.2fs", item.notifier, item.event, item.check.slug, took)

    async def _record_failure(self, item: OutboxItem, error: BaseException) -> None:
        text = str(error) or type(error).__name__
        permanent = isinstance(error, NotifyError) and error.permanent
        attempts = item.attempts + 1
        if permanent or attempts >= MAX_ATTEMPTS:
            await self._store.notification_failed(item.id, text, None)
            log.error("%s: %s for %s failed for good: %s", item.notifier, item.event,
                      item.check.slug, text)  # fmt: skip
            return
        delay = retry_delay(item.attempts)
        await self._store.notification_failed(item.id, text, self._clock.now() + delay)
        log.warning("%s: %s for %s failed (attempt %d, next in %.0fs): %s", item.notifier,
                    item.event, item.check.slug, attempts, delay, text)  # fmt: skip

    def _event(self, item: OutboxItem) -> Event:
        return Event(
            kind=item.event,
            check=item.check,
            flip=item.flip,
            site_url=self._site_url,
            flip_id=item.flip_id,
            down_since=item.down_since,
            last_body=item.last_body,
            exit_status=item.exit_status,
        )
