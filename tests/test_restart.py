"""Restart correctness: a daemon that was stopped for a while neither storms nor forgets.

Checks whose deadline passed while heartbeatd was down get the startup grace (their jobs may
have pinged into the void); one still silent after it is alerted once, dated at its original
deadline; a check already down is not alerted again; and the wheel the new daemon builds holds,
for every check, the deadline recomputed from the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from heartbeatd.core import model
from heartbeatd.core.clock import ManualClock
from tests.conftest import Daemon

StartDaemon = Callable[..., Any]


async def down_flips(daemon: Daemon) -> dict[str, tuple[float, float]]:
    """slug -> (at, noticed) of every down flip."""
    rows = await daemon.query(
        "SELECT c.slug, f.at, f.noticed FROM flips f JOIN checks c ON c.id = f.check_id "
        "WHERE f.new_status = 'down' ORDER BY f.id"
    )
    found: dict[str, tuple[float, float]] = {}
    for slug, at, noticed in rows:
        assert slug not in found, f"{slug} went down twice"
        found[slug] = (at, noticed)
    return found


async def alerts(daemon: Daemon) -> list[str]:
    rows = await daemon.query(
        "SELECT c.slug FROM outbox o JOIN flips f ON f.id = o.flip_id "
        "JOIN checks c ON c.id = f.check_id WHERE o.event = 'down' ORDER BY o.id"
    )
    return [slug for (slug,) in rows]


async def stopped_for(first: Daemon, clock: ManualClock, seconds: float) -> None:
    await first.client.close()
    clock.advance(seconds)


async def test_overdue_checks_are_held_then_alerted_once(
    start_daemon: StartDaemon, clock: ManualClock
) -> None:
    first = await start_daemon()
    void = [await first.add(f"void-{i}", period=60.0, grace=30.0) for i in range(50)]
    silent = [await first.add(f"silent-{i}", period=60.0, grace=30.0) for i in range(50)]
    down = await first.add("down", period=60.0, grace=30.0)
    for check in [*void, *silent, down]:
        await first.client.get(f"/ping/{check.uuid}")
    await first.client.get(f"/ping/{down.uuid}/fail")
    pinged = clock.now()
    await stopped_for(first, clock, 3600)

    second = await start_daemon()
    assert await alerts(second) == ["down"]  # only the one from before the stop: no storm
    await second.advance(10)
    for check in void:  # their jobs ping again, as cron does
        assert (await second.client.get(f"/ping/{check.uuid}")).status == 200
    await second.advance(19.9)
    assert await alerts(second) == ["down"]
    await second.advance(0.2)  # 30 s (each check's own grace) after start-up
    assert sorted(await alerts(second)) == sorted(["down", *(c.slug for c in silent)])
    flips = await down_flips(second)
    for check in silent:  # dated at the deadline missed while stopped, noticed after the hold
        assert flips[check.slug][0] == pinged + 90
        assert flips[check.slug][1] == clock.now()
    assert not {c.slug for c in void} & set(flips)
    for _ in range(10):  # the void checks' jobs stop too now: they go down, once each
        await second.advance(600)
    later = await alerts(second)
    assert len(later) == len(set(later)) == 1 + len(silent) + len(void)


async def test_pinged_into_the_void_checks_stay_up_for_good(
    start_daemon: StartDaemon, clock: ManualClock
) -> None:
    first = await start_daemon()
    void = [await first.add(f"void-{i}", period=60.0, grace=30.0) for i in range(20)]
    for check in void:
        await first.client.get(f"/ping/{check.uuid}")
    await stopped_for(first, clock, 7200)
    second = await start_daemon()
    for _ in range(10):  # their jobs keep running every minute
        await second.advance(25)
        for check in void:
            await second.client.get(f"/ping/{check.uuid}")
        await second.advance(35)
    assert await down_flips(second) == {}
    assert await alerts(second) == []


async def test_the_configured_startup_grace_is_the_hold(
    start_daemon: StartDaemon, clock: ManualClock
) -> None:
    first = await start_daemon()
    check = await first.add(period=60.0, grace=30.0)
    await first.client.get(f"/ping/{check.uuid}")
    await stopped_for(first, clock, 3600)
    second = await start_daemon('startup_grace = "5m"\n')
    await second.advance(299)
    assert await alerts(second) == []
    await second.advance(2)
    assert await alerts(second) == [check.slug]


async def test_deadlines_not_yet_due_are_kept_as_they_were(
    start_daemon: StartDaemon, clock: ManualClock
) -> None:
    first = await start_daemon()
    hourly = await first.add("hourly", period=7200.0, grace=3600.0)
    await first.client.get(f"/ping/{hourly.uuid}")
    pinged = clock.now()
    await stopped_for(first, clock, 3600)
    second = await start_daemon('startup_grace = "1h"\n')  # the hold is not for these
    await second.advance(3600 * 2 - 1)
    assert await alerts(second) == []
    await second.advance(2)
    assert (await down_flips(second))["hourly"][0] == pinged + 3 * 3600


async def test_the_rebuilt_wheel_holds_the_deadlines_recomputed_from_the_database(
    start_daemon: StartDaemon, clock: ManualClock
) -> None:
    first = await start_daemon()
    checks = [await first.add(f"p{i}", period=30.0 * (i + 1), grace=10.0) for i in range(40)]
    checks += [
        await first.add(f"cron-{i}", cron=f"{i} * * * *", tz="Europe/Berlin", grace=60.0)
        for i in range(0, 60, 7)
    ]
    started = await first.add("started", period=3600.0, grace=600.0, max_runtime=900.0)
    for i, check in enumerate(checks):
        await first.advance(1)
        await first.client.get(f"/ping/{check.uuid}" + ("/fail" if i % 9 == 0 else ""))
    await first.client.get(f"/ping/{started.uuid}/start")
    await stopped_for(first, clock, 40)  # some deadlines passed while stopped, most did not

    second = await start_daemon()
    started_at = clock.now()
    rebuilt = second.monitor._expected
    stored = await second.store.list_checks()
    expected = {c.id: d.at for c in stored if (d := model.going_down(c)) is not None}
    assert {k: v for k, v in rebuilt.items() if isinstance(k, int)} == expected
    assert len(expected) > 40

    # Each fires exactly at its moment, or at the end of the hold if that passed while stopped.
    by_id = {c.id: c for c in stored}
    due: dict[float, set[str]] = {}
    for check_id, at in expected.items():
        moment = max(at, started_at + by_id[check_id].grace) if at < started_at else at
        due.setdefault(moment, set()).add(by_id[check_id].slug)
    for moment in sorted(due):
        await second.advance(max(0.0, moment - 0.25 - clock.now()))
        assert not due[moment] & set(await down_flips(second)), "fired early"
        await second.advance(0.5)
        went_down = await down_flips(second)
        for slug in due[moment]:
            check = next(c for c in stored if c.slug == slug)
            assert went_down[slug][0] == expected[check.id], slug  # dated at the deadline
