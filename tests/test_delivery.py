"""Delivery under faults: a stuck target holds up nothing else; a crash loses no alert, and a
failed write no reminder."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from heartbeatd.core.clock import ManualClock
from heartbeatd.notify.dispatch import RECORD_RETRY
from heartbeatd.notify.slots import AT_ONCE
from heartbeatd.store import ByUuid, CheckDefinition, PingIn, Store
from tests.conftest import Daemon, eventually
from tests.notify_helpers import webhook_config
from tests.test_end_to_end import curl, free_port
from tests.test_ping import outbox_is


def two_webhooks(stuck_url: str, healthy_url: str) -> str:
    return f"""
[[notifier]]
name = "stuck"
type = "webhook"
url = "{stuck_url}"
timeout = "30s"
default = true

[[notifier]]
name = "healthy"
type = "webhook"
url = "{healthy_url}"
default = true
"""


async def test_a_target_that_never_answers_holds_up_nothing_else(
    start_daemon, aiohttp_server: Any
) -> None:
    stuck_requests = 0
    healthy: list[str] = []
    never = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        nonlocal stuck_requests
        stuck_requests += 1
        await never.wait()
        return web.Response()

    async def fine(request: web.Request) -> web.Response:
        healthy.append((await request.json())["check"]["slug"])
        return web.Response()

    app = web.Application()
    app.router.add_post("/stuck", stuck)
    app.router.add_post("/fine", fine)
    server = await aiohttp_server(app)
    daemon = await start_daemon(
        two_webhooks(str(server.make_url("/stuck")), str(server.make_url("/fine")))
    )
    checks = [await daemon.add(f"job-{i}", period=5.0, grace=1.0) for i in range(100)]
    for check in checks:
        await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)  # all 100 go down: 100 alerts for each notifier

    await eventually(lambda: len(healthy) == 100)  # the healthy target gets every one
    assert sorted(healthy) == sorted(c.slug for c in checks)
    assert stuck_requests <= AT_ONCE  # the stuck one holds its own few sends, no more
    for check in checks[:20]:  # and pings are answered as before
        assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 200
    never.set()


async def test_a_slow_target_gets_more_sends_at_once_than_a_fast_one(
    start_daemon, aiohttp_server: Any
) -> None:
    under_way = 0
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        nonlocal under_way
        under_way += 1
        await gate.wait()  # the gate each request met on arrival
        under_way -= 1
        return web.Response()

    app = web.Application()
    app.router.add_post("/slow", slow)
    server = await aiohttp_server(app)
    daemon = await start_daemon(
        f'[[notifier]]\nname = "slow"\ntype = "webhook"\nurl = "{server.make_url("/slow")}"\n'
        'timeout = "30s"\ndefault = true\n'
    )
    checks = [await daemon.add(f"job-{i}", period=5.0, grace=1.0) for i in range(40)]
    for check in checks:
        await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)  # 40 alerts
    await eventually(lambda: under_way == AT_ONCE)  # a new notifier starts as a fast one
    first, gate = gate, asyncio.Event()
    daemon.clock.advance(3)  # the first sends take 3 s ...
    first.set()
    # ... so more go at once: a slow service's sends cost waiting, not CPU (slots.py)
    await eventually(lambda: under_way >= 3 * AT_ONCE)
    gate.set()

    async def all_sent() -> bool:
        return await daemon.query("SELECT count(*) FROM outbox WHERE state = 'sent'") == [(40,)]

    await eventually(all_sent)  # and every alert arrives


async def test_an_alert_survives_a_kill_between_flip_and_delivery(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    sink_port, port = free_port(), free_port()
    config = tmp_path / "heartbeatd.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n\n[[check]]\nname = "nightly"\nperiod = "1s"\n'
        f'grace = "1s"\n\n[[notifier]]\nname = "sink"\ntype = "webhook"\n'
        f'url = "http://127.0.0.1:{sink_port}/hook"\ndefault = true\n'
    )
    db = tmp_path / "heartbeatd.db"

    def start() -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
        with (tmp_path / "daemon.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "heartbeatd", "serve", "--config", str(config)],
                cwd=tmp_path, env=env, stderr=log,
            )  # fmt: skip

    def outbox() -> list[tuple[str, str, int]]:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT event, state, attempts FROM outbox").fetchall()

    daemon = start()
    try:
        await eventually(lambda: _answers(port), timeout=20)
        with sqlite3.connect(db) as conn:
            (uuid,) = conn.execute("SELECT uuid FROM checks").fetchone()
        assert await curl(f"http://127.0.0.1:{port}/ping/{uuid}") == (200, "OK")
        # Down after 2 s of silence; the sink is not listening, so the first attempt fails.
        await eventually(lambda: outbox() == [("down", "pending", 1)], timeout=15)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    sink = web.Application()
    sink.router.add_post("/hook", hook)
    await aiohttp_server(sink, port=sink_port)
    daemon = start()
    try:
        await eventually(lambda: outbox() == [("down", "sent", 2)], timeout=20)
        assert [event["event"] for event in received] == ["down"]  # once, not re-alerted
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


async def _answers(port: int) -> bool:
    code, _ = await curl(f"http://127.0.0.1:{port}/ping/x")
    return code == 404


# The disk refuses a reminder's row, as a full one would refuse a new row (the send's own
# record is an update in place): a write failing between recording a send and its reminder.
REFUSE_REMINDERS = (
    "CREATE TRIGGER refuse_reminders BEFORE INSERT ON outbox WHEN NEW.event = 'repeat' "
    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
)


async def test_a_send_and_its_next_reminder_are_recorded_together_or_not_at_all(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with Store(tmp_path / "heartbeatd.db") as store:
        store.router = lambda check, event: ("hook",)
        definition = CheckDefinition(name="backup", slug="backup", period=60.0, grace=10.0)
        check = await store.add_check(definition, clock.now())
        ping = PingIn("success", None, None, "GET", "http", "127.0.0.1", "curl/8", b"", 0)
        went_down = (await store.record_ping(ByUuid(check.uuid), ping, clock.now())).alert_after
        assert went_down is not None
        await store.expire([(check.id, went_down)], went_down)
        (item,), _, _ = await store.due_notifications(went_down, {"hook": (1, ())})

        async def outbox() -> list[tuple[str, str, float]]:
            return [(r["event"], r["state"], r["next_attempt"]) for r in await store.outbox()][::-1]

        await store._writer.run(lambda conn: conn.execute(REFUSE_REMINDERS))
        with pytest.raises(sqlite3.IntegrityError):
            await store.notification_sent(item.id, went_down + 1, went_down + 3601)
        assert await outbox() == [("down", "pending", went_down)]  # neither: it is sent again

        await store._writer.run(lambda conn: conn.execute("DROP TRIGGER refuse_reminders"))
        await store.notification_sent(item.id, went_down + 2, went_down + 3602)
        assert await outbox() == [
            ("down", "sent", went_down),
            ("repeat", "pending", went_down + 3602),
        ]


async def test_a_send_that_cannot_be_recorded_is_not_sent_again_at_once(
    start_daemon: Callable[..., Any], aiohttp_server: Any
) -> None:
    """A full disk refuses the record of every send: the row stays pending, and without a pause
    the dispatcher sent it again as fast as the service answered."""
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["event"])
        return web.Response()

    sink = web.Application()
    sink.router.add_post("/hook", hook)
    daemon = await start_daemon(webhook_config(str((await aiohttp_server(sink)).make_url("/hook"))))
    await daemon.query(
        "CREATE TRIGGER refuse_sends BEFORE UPDATE OF state ON outbox "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: received == ["down"])
    await asyncio.sleep(0.2)  # real time for a tight loop to show itself
    assert received == ["down"]
    await daemon.advance(RECORD_RETRY)
    await eventually(lambda: received == ["down", "down"])  # at least once, after the pause


async def test_a_repeat_notifier_reminds_on_when_recording_its_send_failed_and_after_a_restart(
    start_daemon: Callable[..., Any], aiohttp_server: Any
) -> None:
    """The record of the first send fails. When the send and its reminder were two writes, the
    send was recorded and the reminder lost: no reminder ever came for that outage."""
    received: list[str] = []
    daemons: list[Daemon] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["event"])
        if len(received) == 1:  # the disk refuses reminders from the first send on ...
            await daemons[0].query(REFUSE_REMINDERS)
        elif len(received) == 2:  # ... until the second
            await daemons[0].query("DROP TRIGGER refuse_reminders")
        return web.Response()

    sink = web.Application()
    sink.router.add_post("/hook", hook)
    config = webhook_config(str((await aiohttp_server(sink)).make_url("/hook")), 'repeat = "1h"')
    daemons.append(await start_daemon(config))
    check = await daemons[0].add(period=5.0, grace=1.0)
    await daemons[0].client.get(f"/ping/{check.uuid}")
    await daemons[0].advance(7)
    await eventually(lambda: received == ["down"])
    # Neither recorded, so sent again (at least once) once the outbox is no longer held, and
    # recorded with its reminder then.
    await daemons[0].advance(RECORD_RETRY)
    await eventually(lambda: outbox_is(daemons[0], [("down", "sent"), ("repeat", "pending")]))
    assert received == ["down", "down"]

    await daemons[0].client.close()  # a restart right after the send
    daemon = await start_daemon(config)
    for reminders in (1, 2):  # and the reminders go on, each scheduling the next
        await daemon.advance(3600)
        await eventually(lambda reminders=reminders: received[2:] == ["repeat"] * reminders)
