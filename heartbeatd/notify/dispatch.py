"""Delivers the outbox: at least once, with backoff, never in the way of pings.

Outbox rows are written in the same transaction as their flip, so an alert exists as soon as the
flip does. This worker sends due rows concurrently (each notifier a few at a time, so one slow
target cannot hold up the others: slots.py), then records the outcome. A crash between sending and
recording means one resend after restart: the documented at-least-once case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Mapping

from heartbeatd.core.clock import Clock
from heartbeatd.core.config import NotifierSpec
from heartbeatd.core.model import Status, label, status_at
from heartbeatd.notify import Event, Notifier, NotifyError
from heartbeatd.notify.slots import Slots
from heartbeatd.store import OutboxItem, Store

log = logging.getLogger("heartbeatd.notify")

BACKOFF_FIRST = 5.0
BACKOFF_MAX = 3600.0
DEFAULT_POLICY = NotifierSpec(name="", type="")
WALL_STEP = 2.0  # a change of wall - monotonic beyond this is a clock step, not NTP slewing
# After a send that could not be recorded (a full or read-only disk) nothing is started for
# this long: the row is still pending, and looking again at once would send it again and again
# as fast as the service answers.
RECORD_RETRY = 30.0
REMINDERS = ("repeat", "late")  # not a flip's alert: a silence defers or drops them when due


def retry_delay(attempts: int, rng: random.Random) -> float:
    """5 s, 10 s, 20 s ... capped at an hour, each ±20 %: quick for a blip, gentle on a dead
    target, and spread so a storm of retries does not arrive at one instant."""
    return min(BACKOFF_FIRST * 2.0**attempts, BACKOFF_MAX) * rng.uniform(0.8, 1.2)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        site_url: str,
        policies: Mapping[str, NotifierSpec] | None = None,
    ) -> None:
        self._store = store
        self._notifiers = notifiers
        self._policies = policies or {}
        self._clock = clock
        self._site_url = site_url
        self._wake = asyncio.Event()
        self._in_flight: dict[int, tuple[str, asyncio.Task[None]]] = {}
        self._limits = {name: Slots() for name in notifiers}
        self._failing: set[str] = set()  # notifiers whose last attempt failed
        self._rng = random.Random()
        self.attempts: Counter[str] = Counter()  # "sent"/"failed" deliveries since start: /metrics
        self._task: asyncio.Task[None] | None = None
        self._wall_offset = clock.now() - clock.monotonic()  # to notice wall-clock steps
        self._newest_row = 0  # the newest outbox row at the last pass: written before any step
        self._retiring: set[asyncio.Task[None]] = set()  # old notifiers waiting to be closed
        self.heartbeatd_down: tuple[float, float] | None = None  # told in alerts it explains
        self._held_until = 0.0  # monotonic; see RECORD_RETRY

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeatd-dispatch")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        tasks = [task for _, task in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._retiring)
        for notifier in self._notifiers.values():
            await notifier.close()

    def replace(
        self, notifiers: Mapping[str, Notifier], policies: Mapping[str, NotifierSpec]
    ) -> None:
        """Deliver with a reloaded config's notifiers from now on.

        Deliveries already under way finish with the instances they started with, which are
        closed only after that: closing a session under a send would fail it for no reason.
        Rows for a notifier that is gone fail as they do after a restart without it.
        """
        retired = list(self._notifiers.values())
        self._notifiers = notifiers
        self._policies = policies
        self._limits = {name: self._limits.get(name) or Slots() for name in notifiers}
        self._failing &= set(notifiers)
        under_way = [task for _, task in self._in_flight.values()]
        closing = asyncio.create_task(self._close_after(retired, under_way))
        self._retiring.add(closing)
        closing.add_done_callback(self._retiring.discard)
        self._wake.set()

    async def _close_after(
        self, notifiers: list[Notifier], tasks: list[asyncio.Task[None]]
    ) -> None:
        if tasks:
            await asyncio.wait(tasks)
        for notifier in notifiers:
            try:
                await notifier.close()
            except Exception:
                log.exception("closing the replaced notifier %s failed", notifier.name)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._start_due()
            except Exception:
                log.exception("reading the outbox failed; trying again in 5s")
                delay = 5.0
            await self._clock.sleep(delay, self._wake)

    async def _start_due(self) -> float:
        """Start delivering what is due; return how long to sleep before looking again."""
        held = self._held_until - self._clock.monotonic()
        if held > 0:
            return held
        busy: dict[str, list[int]] = {name: [] for name in self._notifiers}
        for item_id, (name, _) in self._in_flight.items():
            if name in busy:  # not when its notifier was removed by a reload
                busy[name].append(item_id)
        room = {name: (self._limits[name].rows_wanted(len(ids)), ids) for name, ids in busy.items()}
        await self._follow_wall_steps()
        now, read_at = self._clock.now(), self._clock.monotonic()
        due, next_at, self._newest_row = await self._store.due_notifications(now, room)
        for item in due:
            notifier, limit = self._notifiers[item.notifier], self._limits[item.notifier]
            task = asyncio.create_task(self._deliver(notifier, limit, item))
            self._in_flight[item.id] = (item.notifier, task)
        if next_at is None:
            return 3600.0
        if next_at <= now:  # due but in flight or over its slots: finishing one wakes us
            return 1.0
        # Timed from the `now` the read used, less the read's own time on the clock that does
        # not step: a wall-clock step or a slow read meanwhile must not stretch the wait (a
        # step is followed on the next pass, which a wait of 0 starts at once).
        return next_at - now - (self._clock.monotonic() - read_at)

    async def _follow_wall_steps(self) -> None:
        """Keep pending retries and reminders as far ahead as they were when the wall clock
        steps (NTP at boot, a clock set by hand): the outbox is timed in wall-clock seconds."""
        offset = self._clock.now() - self._clock.monotonic()
        step, self._wall_offset = offset - self._wall_offset, offset
        if abs(step) > WALL_STEP:
            moved = await self._store.shift_pending(step, self._newest_row)
            log.warning("the wall clock stepped by %+.0fs; %d pending notifications moved with it",
                        step, moved)  # fmt: skip

    async def _deliver(self, notifier: Notifier, limit: Slots, item: OutboxItem) -> None:
        try:
            void = self._void(item)
            if item.event in REMINDERS and await self._store.hold_reminder(
                item.id, item.check, self._clock.now()
            ):
                pass  # a silence holds the check: later, or never for a late warning
            elif void is not None:
                await self._store.notification_cancelled(item.id, void)
            else:
                async with limit:
                    await self._attempt(notifier, item, limit)
        except Exception:
            log.exception("recording notification %d failed; holding the outbox %.0fs",
                          item.id, RECORD_RETRY)  # fmt: skip
            self._held_until = self._clock.monotonic() + RECORD_RETRY
        finally:
            self._in_flight.pop(item.id, None)
            held = sum(1 for name, _ in self._in_flight.values() if name == item.notifier)
            if limit.rows_wanted(held):
                self._wake.set()

    def _void(self, item: OutboxItem) -> str | None:
        """Why a reminder or late warning no longer applies (None: send it)."""
        if item.event == "repeat" and not (
            item.flip_is_latest and item.check.status == Status.DOWN
        ):
            return "the check is no longer down"
        if item.event == "late" and status_at(item.check, self._clock.now()) != Status.GRACE:
            return "the check is no longer late"
        return None

    async def _attempt(self, notifier: Notifier, item: OutboxItem, slots: Slots) -> None:
        event = self._event(item)
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(notifier.timeout):  # no task per send, as wait_for has
                await notifier.send(event)
        except (NotifyError, TimeoutError, OSError) as e:
            await self._record_failure(item, e)
            return
        took = self._clock.monotonic() - started  # the service's time, not our writer's
        slots.delivered(took)
        now = self._clock.now()
        await self._store.notification_sent(item.id, now, self._next_reminder(item, now))
        self.attempts["sent"] += 1
        log.info("%s: %s sent for %s in %.2fs", item.notifier, item.event, label(item.check), took)
        if item.notifier in self._failing:
            self._failing.discard(item.notifier)
            log.warning("notifier %s works again", item.notifier)

    def _next_reminder(self, item: OutboxItem, sent_at: float) -> float | None:
        """When to remind of the outage `item` told of, if its notifier repeats; recorded with
        the send itself, so that no crash between the two can end the reminders."""
        repeat = self._policy(item.notifier).repeat
        if repeat is None or item.event not in ("down", "repeat"):
            return None
        return sent_at + repeat

    async def _record_failure(self, item: OutboxItem, error: BaseException) -> None:
        """Retry with backoff until retry_for has passed since the row was written.

        The log says when a notifier starts failing and when it works again, not every
        attempt: a dead target during an outage would otherwise bury everything else.
        """
        text = str(error) or type(error).__name__
        now = self._clock.now()
        permanent = isinstance(error, NotifyError) and error.permanent
        deadline = item.created + self._policy(item.notifier).retry_for
        retry_at = now + retry_delay(item.attempts, self._rng)
        asked = error.retry_after if isinstance(error, NotifyError) else None
        if asked is not None:  # not sooner than the service said; a last try at the deadline
            retry_at = max(retry_at, min(now + asked, deadline))
        gave_up = permanent or retry_at > deadline
        await self._store.notification_failed(item.id, text, None if gave_up else retry_at)
        self.attempts["failed"] += 1
        if item.notifier not in self._failing:
            self._failing.add(item.notifier)
            log.error("notifier %s is failing: %s", item.notifier, text)
        what = "gave up" if gave_up else f"retry in {retry_at - now:.0f}s"
        log.debug("%s: %s for %s failed (%s): %s", item.notifier, item.event, label(item.check),
                  what, text)  # fmt: skip
        if gave_up:
            log.error("%s: %s for %s not delivered: %s", item.notifier, item.event,
                      label(item.check), text)  # fmt: skip

    def _policy(self, name: str) -> NotifierSpec:
        return self._policies.get(name, DEFAULT_POLICY)

    def _event(self, item: OutboxItem) -> Event:
        return Event(
            kind=item.event,
            check=item.check,
            flip=item.flip,
            site_url=self._site_url,
            flip_id=item.flip_id,
            outbox_id=item.id,
            down_since=item.down_since,
            last_body=item.last_body,
            exit_status=item.exit_status,
            last_metrics=item.last_metrics,
            now=self._clock.now(),
            heartbeatd_down=self.heartbeatd_down,
            silence=item.held_by,
        )
