"""Clock trouble: the wall clock steps an hour forward or back while checks are armed.

Deadlines are recorded in wall time but waited for in monotonic time (clock.py, monitor.py),
so a step of the wall clock must neither take every check down at once nor let one slip by.
"""

from __future__ import annotations

import pytest

from heartbeatd.core.clock import ManualClock
from heartbeatd.store import CheckDefinition, Store
from tests.conftest import Daemon, eventually

CHECKS = 100
HOUR = 3600.0


async def down_count(daemon: Daemon) -> int:
    rows = await daemon.query("SELECT count(*) FROM flips WHERE new_status = 'down'")
    return int(rows[0][0])


async def alerts(daemon: Daemon) -> int:
    rows = await daemon.query("SELECT count(*) FROM outbox WHERE event = 'down'")
    return int(rows[0][0])


async def pinged_checks(daemon: Daemon, count: int = CHECKS) -> list[str]:
    """`count` checks due 60 s + 10 s grace after their ping, all pinged now."""
    uuids = []
    for i in range(count):
        check = await daemon.add(f"c{i}", period=60.0, grace=10.0)
        assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 200
        uuids.append(check.uuid)
    return uuids


async def another_process_commits(daemon: Daemon, clock: ManualClock) -> None:
    """What `heartbeatd check add` does: the daemon notices and re-reads every deadline."""
    generation = daemon.store._writer.generation
    async with Store(daemon.store.path) as other:
        await other.add_check(CheckDefinition(name="from-cli", period=HOUR), clock.now())
    await eventually(lambda: daemon.store._writer.generation != generation)  # polled at 2 Hz
    await daemon.monitor.settled()


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
async def test_a_wall_clock_step_neither_fires_nor_loses_deadlines(
    daemon: Daemon, clock: ManualClock, jump: float
) -> None:
    await pinged_checks(daemon)
    clock.jump_wall(jump)
    await daemon.advance(69)
    assert await down_count(daemon) == 0  # no mass alert on a forward step
    await daemon.advance(2)
    assert await down_count(daemon) == CHECKS  # none lost or delayed an hour on a back step
    assert await alerts(daemon) == CHECKS


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
async def test_pings_after_a_step_set_deadlines_from_that_ping(
    daemon: Daemon, clock: ManualClock, jump: float
) -> None:
    uuids = await pinged_checks(daemon)
    await daemon.advance(30)
    clock.jump_wall(jump)
    for uuid in uuids[: CHECKS // 2]:
        assert (await daemon.client.get(f"/ping/{uuid}")).status == 200
    await daemon.advance(41)  # the unpinged half is due 70 s after its first ping
    assert await down_count(daemon) == CHECKS // 2
    await daemon.advance(28)
    assert await down_count(daemon) == CHECKS // 2
    await daemon.advance(2)  # the pinged half 70 s after its second ping, not an hour off
    assert await down_count(daemon) == CHECKS


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
async def test_a_step_then_a_change_by_another_process_fires_nothing_early_or_late(
    daemon: Daemon, clock: ManualClock, jump: float
) -> None:
    await pinged_checks(daemon)
    clock.jump_wall(jump)
    await another_process_commits(daemon, clock)  # the monitor re-reads every deadline
    await daemon.advance(1)
    assert await down_count(daemon) == 0
    await daemon.advance(67)
    assert await down_count(daemon) == 0
    await daemon.advance(3)
    assert await down_count(daemon) == CHECKS
