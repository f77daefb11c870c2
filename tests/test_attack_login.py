"""Attacks on the login form, each shown closed.

- Hole 3, filling the disk: audit rows, flips, finished notifications and expired sessions
  are pruned by their retention, in the background, by the clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

from heartbeatd import model
from heartbeatd.auth import SESSION_LIFETIME, hash_password
from heartbeatd.retention import PRUNE_EVERY
from tests.conftest import eventually

DAY = 86400.0


# -- hole 3: the disk ------------------------------------------------------------------------


async def test_audit_rows_older_than_the_retention_are_pruned_by_the_clock(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon('audit_retention = "30d"\n')
    for _ in range(1000):
        await daemon.store.record_audit(daemon.clock.now(), "cli", "check.create", "old")
    daemon.clock.advance(20 * DAY)
    await daemon.store.record_audit(daemon.clock.now(), "cli", "check.create", "recent")
    daemon.clock.advance(PRUNE_EVERY)
    await asyncio.sleep(0.05)
    assert await daemon.query("SELECT count(*) FROM audit") == [(1001,)]  # none is 30 days old
    daemon.clock.advance(10 * DAY)

    async def only_recent_left() -> bool:
        return await daemon.query("SELECT target FROM audit") == [("recent",)]

    await eventually(only_recent_left)


async def test_old_flips_and_expired_sessions_are_pruned_but_each_checks_status_stays_known(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon('history_retention = "30d"\n')
    check = await daemon.add("job")
    for change in (model.pause, model.resume, model.pause):
        await daemon.store.change_state(check.uuid, change, daemon.clock.now())
        daemon.clock.advance(60)
    await daemon.store.set_password("admin", hash_password("a password"), daemon.clock.now())
    now = daemon.clock.now()
    await daemon.store.add_session("token hash", 1, "csrf", now, now + SESSION_LIFETIME)
    daemon.clock.advance(31 * DAY)
    await daemon.store.change_state(check.uuid, model.resume, daemon.clock.now())

    async def pruned() -> bool:
        flips = await daemon.query("SELECT reason FROM flips ORDER BY id")
        sessions = await daemon.query("SELECT count(*) FROM sessions")
        return flips == [("pause",), ("resume",)] and sessions == [(0,)]

    daemon.clock.advance(PRUNE_EVERY)
    await eventually(pruned)  # the pause in force at the cutoff stays: the status then is known
