"""Deadlines: the timer wheel takes silent checks down at the right moment, and only then."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from heartbeatd.core import model
from heartbeatd.core.clock import ManualClock, SystemClock
from heartbeatd.store import Store
from tests.conftest import Daemon


async def flips(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query(
        "SELECT old_status, new_status, reason, at, detail FROM flips ORDER BY id"
    )


async def outbox(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query("SELECT notifier, event FROM outbox ORDER BY id")


async def test_a_silent_check_goes_down_exactly_at_period_plus_grace(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    pinged = daemon.clock.now()
    await daemon.advance(69.9)
    assert [f[1] for f in await flips(daemon)] == ["up"]
    await daemon.advance(0.2)
    down = (await flips(daemon))[-1]
    assert down[:3] == ("up", "down", "timeout")
    assert down[3] == pinged + 70  # dated at the deadline, not when noticed
    assert down[4] == "missed ping"
    assert await outbox(daemon) == [("log", "down")]


async def test_a_ping_in_time_moves_the_deadline(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    for _ in range(5):
        await daemon.advance(65)
        await daemon.client.get(f"/ping/{check.uuid}")
    assert [f[1] for f in await flips(daemon)] == ["up"]


async def test_recovery_after_down_is_notified(daemon: Daemon) -> None:
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await daemon.client.get(f"/ping/{check.uuid}")
    assert [f[:3] for f in await flips(daemon)] == [
        ("new", "up", "ping"),
        ("up", "down", "timeout"),
        ("down", "up", "ping"),
    ]
    assert await outbox(daemon) == [("log", "down"), ("log", "up")]


async def test_a_down_check_is_alerted_once(daemon: Daemon) -> None:
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    for _ in range(10):
        await daemon.advance(7)
    assert len(await outbox(daemon)) == 1


async def test_misses_waits_for_consecutive_missed_periods(daemon: Daemon) -> None:
    check = await daemon.add(period=10.0, grace=2.0, misses=3)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(31)
    assert len(await flips(daemon)) == 1
    await daemon.advance(1.5)
    assert (await flips(daemon))[-1][4] == "missed 3 pings in a row"


async def test_a_run_that_overruns_max_runtime_goes_down(daemon: Daemon) -> None:
    check = await daemon.add(period=3600.0, grace=600.0, max_runtime=30.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.client.get(f"/ping/{check.uuid}/start")
    await daemon.advance(31)
    down = (await flips(daemon))[-1]
    assert down[1:3] == ("down", "timeout")
    assert "did not finish within 30s" in down[4]


async def test_a_paused_check_never_goes_down(daemon: Daemon) -> None:
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.store.change_state(check.uuid, model.pause, daemon.clock.now())
    await daemon.advance(100)
    assert [f[1] for f in await flips(daemon)] == ["up", "paused"]
    assert await outbox(daemon) == []


async def test_a_wall_clock_jump_forward_does_not_fire_deadlines(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    daemon.clock.jump_wall(3600)
    await daemon.advance(1)
    assert [f[1] for f in await flips(daemon)] == ["up"]


async def test_a_wall_clock_jump_back_does_not_delay_the_deadline(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    daemon.clock.jump_wall(-3600)
    await daemon.advance(71)
    assert [f[1] for f in await flips(daemon)] == ["up", "down"]


async def test_many_checks_due_together_all_go_down(daemon: Daemon) -> None:
    checks = [await daemon.add(f"c{i}", period=30.0, grace=5.0) for i in range(200)]
    for check in checks:
        await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(36)
    assert len([f for f in await flips(daemon) if f[1] == "down"]) == 200


async def test_after_a_restart_overdue_checks_get_the_startup_grace(start_daemon, clock) -> None:
    first = await start_daemon()
    late = await first.add("late", period=60.0, grace=30.0)
    already = await first.add("already-down", period=60.0, grace=30.0)
    await first.client.get(f"/ping/{late.uuid}")
    await first.client.get(f"/ping/{already.uuid}")
    await first.client.get(f"/ping/{already.uuid}/fail")
    await first.client.close()

    clock.advance(3600)  # the daemon was stopped for an hour
    second = await start_daemon()
    await second.advance(29)
    assert [f[1] for f in await flips(second)] == ["up", "up", "down"]
    await second.advance(2)
    down = (await flips(second))[-1]
    assert down[1] == "down" and down[3] == clock.now() - 3600 - 31 + 90
    assert [e for (_, e) in await outbox(second)] == ["down", "down"]


async def test_a_ping_during_the_startup_grace_prevents_the_alert(start_daemon, clock) -> None:
    first = await start_daemon()
    check = await first.add(period=60.0, grace=30.0)
    await first.client.get(f"/ping/{check.uuid}")
    await first.client.close()
    clock.advance(3600)
    second = await start_daemon()
    await second.advance(10)
    await second.client.get(f"/ping/{check.uuid}")
    await second.advance(60)
    assert [f[1] for f in await flips(second)] == ["up"]


async def test_the_daemon_learns_of_a_pause_made_by_another_process(
    daemon: Daemon, clock: ManualClock
) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    async with Store(daemon.store.path) as other:  # as `heartbeatd check pause` does
        await other.change_state(check.slug, model.pause, clock.now())
    for _ in range(40):  # the writer polls data_version every half second
        await asyncio.sleep(0.05)
        if not daemon.monitor._wheel:
            break
    await daemon.advance(100)
    assert [f[1] for f in await flips(daemon)] == ["up", "paused"]


async def test_shutdown_is_not_held_up_by_a_wake_in_the_same_turn() -> None:
    """A ping (or reload) waking the monitor just as SIGTERM cancels it must not make the
    daemon wait for its next deadline, an hour away, before it can stop."""
    wake = asyncio.Event()
    sleeping = asyncio.create_task(SystemClock().sleep(3600, wake))
    await asyncio.sleep(0)
    wake.set()
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sleeping, 1)
