"""Retention: every table that grows with time is pruned in the background.

Pings are pruned per check as they arrive (ping_retention, store.py). Everything else that
grows is pruned here every PRUNE_EVERY: audit rows older than audit_retention, flips and
finished notifications older than history_retention (store.PRUNABLE says which flips must
stay), and expired sessions. Each table is walked in batches of BATCH rows, each one small
background write (store.prune), so pruning a large backlog neither holds the writer nor
delays a ping; the time is read once per run from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from heartbeatd.core.clock import Clock
from heartbeatd.core.errors import HeartbeatdError
from heartbeatd.store import Store

log = logging.getLogger("heartbeatd.retention")

PRUNE_EVERY = 3600.0
# Rows looked at per write. Measured on 200,000 flips of 1,000 checks: a batch of 100 takes
# 0.2 ms of the writer (median; flips cost most, for their EXISTS tests), 200 took 0.4 ms.
BATCH = 100


class Pruner:
    def __init__(
        self, store: Store, clock: Clock, audit_retention: float, history_retention: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit_retention = audit_retention
        self._history_retention = history_retention
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartbeatd-retention")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self._clock.sleep(PRUNE_EVERY, self._stop)
            if not self._stop.is_set():
                try:
                    await self.prune()
                except HeartbeatdError as e:  # a full or locked disk: try again next time
                    log.warning("cannot prune old rows: %s", e.text)

    async def prune(self) -> None:
        """One pass over every table with a retention."""
        now = self._clock.now()
        cutoffs = {
            "audit": now - self._audit_retention,
            "sessions": now,
            "outbox": now - self._history_retention,
            "flips": now - self._history_retention,
        }
        for table, cutoff in cutoffs.items():
            after: int | None = 0
            while after is not None and not self._stop.is_set():
                after = await self._store.prune(table, cutoff, after, BATCH)
