"""Monitoring the monitor: heartbeatd pings another monitor, and knows when it was itself down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.cli.notify import sample_check
from heartbeatd.core.model import Flip, Status
from heartbeatd.notify import Event
from tests.conftest import eventually

JOB = '\n[[check]]\nname = "job"\nslug = "job"\nperiod = "1m"\ngrace = "10s"\n'


class OtherMonitor:
    """A second monitor on loopback that counts heartbeatd's pings and can be made to fail."""

    def __init__(self) -> None:
        self.pings = 0
        self.status = 200

    async def ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        return web.Response(status=self.status, text="OK")


@pytest.fixture
async def other(aiohttp_server: Any) -> tuple[OtherMonitor, str]:
    monitor = OtherMonitor()
    app = web.Application()
    app.router.add_get("/ping/secret-uuid", monitor.ping)
    server = await aiohttp_server(app)
    return monitor, str(server.make_url("/ping/secret-uuid"))


async def test_it_pings_the_other_monitor_at_start_and_every_interval(
    start_daemon: Callable[..., Any], other: tuple[OtherMonitor, str]
) -> None:
    monitor, url = other
    daemon = await start_daemon(f'self_ping_url = "{url}"\nself_ping_interval = "2m"\n')
    await eventually(lambda: monitor.pings == 1)  # at once: the other side learns we are back
    daemon.clock.advance(119)
    await asyncio.sleep(0.1)  # time enough for a ping that should not be sent
    assert monitor.pings == 1
    daemon.clock.advance(1)
    await eventually(lambda: monitor.pings == 2)
    daemon.clock.advance(120)
    await eventually(lambda: monitor.pings == 3)


async def test_a_failing_self_ping_is_logged_when_it_starts_and_stops_failing(
    start_daemon: Callable[..., Any],
    other: tuple[OtherMonitor, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor, url = other
    monitor.status = 500
    daemon = await start_daemon(f'self_ping_url = "{url}"\n')
    for n in range(1, 4):
        await eventually(lambda n=n: monitor.pings == n)
        daemon.clock.advance(60)
    monitor.status = 200
    for n in range(4, 6):
        await eventually(lambda n=n: monitor.pings == n)
        daemon.clock.advance(60)
    await eventually(lambda: monitor.pings == 6)
    lines = [r.getMessage() for r in caplog.records if r.name == "heartbeatd.selfmon"]
    host = url.split("/")[2]
    assert lines == [
        f"self-ping to {host} failing: HTTP 500",
        f"self-ping to {host} works again",
    ]
    assert "secret-uuid" not in caplog.text  # the path of a ping URL is its secret


async def test_an_unreachable_other_monitor_is_a_failure_not_a_crash(
    start_daemon: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    await start_daemon('self_ping_url = "http://127.0.0.1:9/ping"\n')  # discard port: refused
    await eventually(lambda: "self-ping to 127.0.0.1:9 failing: cannot connect: " in caplog.text)


async def test_a_restart_knows_how_long_heartbeatd_was_down(
    start_daemon: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = await start_daemon(JOB)
    assert await first.store.last_downtime() is None  # a new database: never down
    first.clock.advance(90)
    stopped = first.clock.now()
    await first.client.close()  # a clean stop writes a last heartbeat
    first.clock.advance(720)

    second = await start_daemon(JOB)
    assert await second.store.last_downtime() == (stopped, stopped + 720)
    assert "heartbeatd was down from " in caplog.text
    assert "(12m)" in caplog.text
    status = ["status", "--db", str(second.store.path)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, status)  # it runs its own loop
    assert "last downtime: from " in result.output
    assert "(12m)" in result.output


async def test_the_heartbeat_is_written_every_minute(start_daemon: Callable[..., Any]) -> None:
    daemon = await start_daemon()
    started = daemon.clock.now()
    assert await daemon.store.alive_at() == started
    daemon.clock.advance(60)
    await eventually(lambda: _alive_at_is(daemon, started + 60))


async def _alive_at_is(daemon: Any, expected: float) -> bool:
    return bool(await daemon.store.alive_at() == expected)


async def test_alerts_for_a_silence_heartbeatd_was_down_for_say_so(
    start_daemon: Callable[..., Any], aiohttp_server: Any
) -> None:
    bodies: list[str] = []

    async def room(request: web.Request) -> web.Response:
        bodies.append((await request.json())["body"])
        return web.json_response({"event_id": "$1"})

    app = web.Application()
    app.router.add_put("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", room)
    server = await aiohttp_server(app)
    toml = JOB + (
        '\n[[check]]\nname = "fails"\nslug = "fails"\nperiod = "1h"\n'
        f'\n[[notifier]]\nname = "room"\ntype = "matrix"\nhomeserver = "{server.make_url("")}"\n'
        'access_token = "t0ken"\nroom_id = "!room:example.org"\ndefault = true\n'
    )
    first = await start_daemon(toml)
    for check in await first.store.list_checks():
        assert (await first.client.get(f"/ping/{check.uuid}")).status == 200
    first.clock.advance(5)
    await first.client.close()
    first.clock.advance(300)  # the job's deadline (70 s after its ping) passes while we are away

    second = await start_daemon(toml)
    fails = next(c for c in await second.store.list_checks() if c.slug == "fails")
    await second.client.get(f"/ping/{fails.uuid}/fail")
    await second.advance(10.1)  # the job's startup grace (its own grace) ends
    await eventually(lambda: len(bodies) == 2)
    job_alert = next(b for b in bodies if b.startswith("job is DOWN"))
    fails_alert = next(b for b in bodies if b.startswith("fails is DOWN"))
    assert "heartbeatd itself was down from " in job_alert
    assert "; pings sent then were lost." in job_alert
    assert "heartbeatd itself was down" not in fails_alert  # it said it failed: no excuse


def test_the_note_is_only_for_silences_that_overlap_the_downtime() -> None:
    now = 1_800_000_000.0
    check = replace(sample_check(now), last_ping=now - 600, status=Status.DOWN)
    flip = Flip(now - 60, Status.UP, Status.DOWN, "timeout", "missed ping")
    during = Event(
        "down", check, flip, "http://hb", now=now, heartbeatd_down=(now - 300, now - 200)
    )
    assert "was down from" in during.lost_pings_note
    assert "was down from" in during.text()
    before = replace(during, heartbeatd_down=(now - 900, now - 700))  # before the last ping
    assert before.lost_pings_note == ""
    after = replace(during, heartbeatd_down=(now - 30, now - 10))  # after it went down
    assert after.lost_pings_note == ""
    recovered = replace(during, kind="up")
    assert recovered.lost_pings_note == ""
    assert replace(during, heartbeatd_down=None).text().count("heartbeatd itself") == 0


def test_self_ping_settings_are_checked(make_config: Callable[..., Any]) -> None:
    from heartbeatd.core.config import ConfigError

    with pytest.raises(ConfigError, match="1: self_ping_url: expected an http"):
        make_config('self_ping_url = "hc-ping.com/x"\n')
    with pytest.raises(ConfigError, match="1: self_ping_interval: must be between 10s and 1d"):
        make_config('self_ping_interval = "1s"\n')
    assert make_config('self_ping_interval = "5m"\n').self_ping_interval == 300.0
