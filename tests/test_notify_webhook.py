"""The webhook notifier against a real HTTP sink on loopback: delivered, retried, given up."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from heartbeatd.web.keys import DISPATCHER
from tests.conftest import Daemon, eventually
from tests.notify_helpers import webhook_config


class Sink:
    """A loopback HTTP server that records requests and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = statuses or []
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.headers.append(dict(request.headers))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def sink(aiohttp_server: Any) -> tuple[Sink, str]:
    recorder = Sink()
    app = web.Application()
    app.router.add_post("/hook", recorder.handle)
    server = await aiohttp_server(app)
    return recorder, str(server.make_url("/hook"))


async def outbox_states(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query("SELECT event, state, attempts, last_error FROM outbox ORDER BY id")


async def go_down(daemon: Daemon) -> Any:
    check = await daemon.add(period=5.0, grace=1.0, desc="nightly <db> dump")
    await daemon.client.post(f"/ping/{check.uuid}", data=b"dumped 0 tables")
    await daemon.advance(7)
    return check


async def test_it_posts_the_down_event_as_json(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url))
    check = await go_down(daemon)
    await eventually(lambda: recorder.received)
    event = recorder.received[0]
    assert event["event"] == "down"
    assert event["summary"] == "backup is DOWN (missed ping)"
    assert event["check"]["uuid"] == check.uuid
    assert event["check"]["desc"] == "nightly <db> dump"
    assert event["flip"]["reason"] == "timeout"
    assert event["last_body_tail"] == "dumped 0 tables"
    assert recorder.headers[0]["Authorization"] == "Bearer s3cret"
    await eventually(lambda: _sent(daemon))


async def _sent(daemon: Daemon) -> bool:
    return [s[:2] for s in await outbox_states(daemon)] == [("down", "sent")]


async def test_it_tells_how_long_the_outage_lasted_on_recovery(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url))
    check = await go_down(daemon)
    await eventually(lambda: recorder.received)
    await daemon.advance(120)
    await daemon.client.get(f"/ping/{check.uuid}")
    await eventually(lambda: len(recorder.received) == 2)
    assert recorder.received[1]["event"] == "up"
    assert recorder.received[1]["summary"] == "backup is UP again after 2m 1s down"


async def test_it_retries_a_5xx_with_backoff_until_delivered(start_daemon, sink) -> None:
    recorder, url = sink
    recorder.statuses = [500, 503]
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    await eventually(lambda: len(recorder.received) == 1)
    await eventually(lambda: _attempts(daemon, 1))
    host = url.split("/")[2]
    assert (await outbox_states(daemon))[0][3] == f"HTTP 500 from {host}"  # never the full URL
    daemon.clock.advance(6)  # first retry after 5 s ± 20 %
    await eventually(lambda: _attempts(daemon, 2))  # its failure recorded, the next one timed
    daemon.clock.advance(12)  # then 10 s ± 20 %
    await eventually(lambda: len(recorder.received) == 3)
    await eventually(lambda: _sent(daemon))


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
async def test_a_wall_clock_step_moves_pending_retries_with_it(
    start_daemon, sink, step: float
) -> None:
    recorder, url = sink
    recorder.statuses = [500, 500]
    daemon = await start_daemon(webhook_config(url, 'retry_for = "1m"'))
    await go_down(daemon)
    await eventually(lambda: _attempts(daemon, 1))
    daemon.clock.jump_wall(step)  # a step back would hold the retry an hour; forward, end it
    daemon.clock.advance(6)  # the first retry, 5 s ± 20 % after the failure
    await eventually(lambda: _attempts(daemon, 2))
    daemon.clock.advance(12)  # the second, still within retry_for of when the alert was written
    await eventually(lambda: len(recorder.received) == 3)
    await eventually(lambda: _sent(daemon))


@pytest.mark.parametrize("meanwhile", ["time passes", "the wall clock steps back"])
async def test_a_retry_falls_due_on_time_when_the_clock_moves_during_the_outbox_read(
    start_daemon, sink, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    recorder, url = sink
    recorder.statuses = [500]
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    await eventually(lambda: _attempts(daemon, 1))
    moved: list[str] = []
    read = daemon.store.due_notifications

    async def read_while_the_clock_moves(*args: Any) -> Any:
        found = await read(*args)
        if not moved:
            moved.append(meanwhile)
            if meanwhile == "time passes":
                daemon.clock.advance(6)  # past the retry (5 s ± 20 %) before the read returns
            else:
                daemon.clock.jump_wall(-3600)
        return found

    monkeypatch.setattr(daemon.store, "due_notifications", read_while_the_clock_moves)
    daemon.app[DISPATCHER].wake()
    await eventually(lambda: moved)
    if meanwhile != "time passes":
        daemon.clock.advance(6)
    await eventually(lambda: len(recorder.received) == 2)
    await eventually(lambda: _sent(daemon))


async def _attempts(daemon: Daemon, n: int) -> bool:
    return (await outbox_states(daemon))[0][2] == n


async def test_it_gives_up_at_once_on_a_4xx(start_daemon, sink) -> None:
    recorder, url = sink
    recorder.statuses = [404]
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    await eventually(lambda: _failed(daemon))
    daemon.clock.advance(3600)
    await daemon.monitor.settled()
    assert len(recorder.received) == 1


async def _failed(daemon: Daemon) -> bool:
    return (await outbox_states(daemon))[0][1] == "failed"


async def test_a_dead_target_does_not_hold_up_pings(start_daemon, unused_tcp_port: int) -> None:
    daemon = await start_daemon(webhook_config(f"http://127.0.0.1:{unused_tcp_port}/hook"))
    check = await go_down(daemon)
    await eventually(lambda: _attempts(daemon, 1))
    for _ in range(20):
        assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 200
    assert "cannot connect to 127.0.0.1:" in (await outbox_states(daemon))[0][3]


async def test_many_alerts_at_once_are_each_delivered_exactly_once(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url))
    checks = [await daemon.add(f"job-{i}", period=5.0, grace=1.0) for i in range(300)]
    for check in checks:
        await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: len(recorder.received) >= 300)
    await eventually(lambda: _all_sent(daemon, 300))
    uuids = sorted(event["check"]["uuid"] for event in recorder.received)
    assert uuids == sorted(check.uuid for check in checks)  # none twice, none missing


async def _all_sent(daemon: Daemon, count: int) -> bool:
    return [s[1] for s in await outbox_states(daemon)] == ["sent"] * count


async def test_retries_stop_after_retry_for(start_daemon, sink) -> None:
    recorder, url = sink
    recorder.statuses = [500] * 100
    daemon = await start_daemon(webhook_config(url, 'retry_for = "1m"'))
    await go_down(daemon)
    for _ in range(12):  # 5, 10, 20, 40 s: the next retry would fall beyond a minute
        await eventually(lambda: len(recorder.received) >= 1)
        daemon.clock.advance(15)
        await daemon.monitor.settled()
    await eventually(lambda: _failed(daemon))
    assert 2 <= len(recorder.received) <= 5


async def test_a_failing_notifier_is_logged_when_it_fails_and_when_it_recovers(
    start_daemon, sink, caplog
) -> None:
    recorder, url = sink
    recorder.statuses = [500, 500, 500]
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    for failed in (1, 2, 3):
        await eventually(lambda failed=failed: _attempts(daemon, failed))
        daemon.clock.advance(60)
    await eventually(lambda: _sent(daemon))
    lines = [r.getMessage() for r in caplog.records if r.name == "heartbeatd.notify"]
    assert [line for line in lines if "is failing" in line] == [
        f"notifier hook is failing: HTTP 500 from {url.split('/')[2]}"
    ]
    assert lines.count("notifier hook works again") == 1


async def test_repeat_reminds_while_down_and_stops_on_recovery(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url, 'repeat = "1h"'))
    check = await go_down(daemon)
    await eventually(lambda: len(recorder.received) == 1)
    await eventually(lambda: _states(daemon, ["sent", "pending"]))
    await daemon.advance(3600)
    await eventually(lambda: len(recorder.received) == 2)
    reminder = recorder.received[1]
    assert reminder["event"] == "repeat"
    assert reminder["summary"].startswith("backup is still DOWN (missed ping), for 1h")
    await eventually(lambda: _states(daemon, ["sent", "sent", "pending"]))
    await daemon.client.get(f"/ping/{check.uuid}")  # recovery: the next reminder is void
    await eventually(lambda: len(recorder.received) == 3)
    assert recorder.received[2]["event"] == "up"
    await daemon.advance(3600)  # the old reminder falls due; the silent check is down anew
    await eventually(lambda: _states(daemon, ["sent", "sent", "cancelled", "sent", "sent"]))
    assert [event["event"] for event in recorder.received] == ["down", "repeat", "up", "down"]


async def _states(daemon: Daemon, expected: list[str]) -> bool:
    return [s[1] for s in await outbox_states(daemon)][: len(expected)] == expected


async def test_a_notifier_removed_from_the_config_fails_its_pending_rows(
    start_daemon, unused_tcp_port: int
) -> None:
    first = await start_daemon(webhook_config(f"http://127.0.0.1:{unused_tcp_port}/hook"))
    await go_down(first)
    await eventually(lambda: _attempts(first, 1))
    await first.client.close()
    second = await start_daemon()  # same database; the config no longer has "hook"
    await second.advance(60)
    await eventually(lambda: _failed(second))
    assert (await outbox_states(second))[0][3] == "no notifier named 'hook' in the config"


async def test_a_check_naming_a_gone_notifier_gets_its_alert_failed_not_left_pending(
    start_daemon, sink
) -> None:
    """A check kept in the database can name a notifier a later config no longer has."""
    _, url = sink
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)  # a pass of the dispatcher sweeps what was written so far
    await eventually(lambda: _states(daemon, ["sent"]))
    orphan = await daemon.add("orphan", notifiers=("pager",), period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{orphan.uuid}")
    await daemon.advance(7)
    await eventually(lambda: _states(daemon, ["sent", "failed"]))
    assert (await outbox_states(daemon))[1][3] == "no notifier named 'pager' in the config"


async def test_a_row_under_a_reused_id_is_swept_within_a_minute(start_daemon, sink) -> None:
    """Row ids of deleted rows come back; the sweep of new rows alone would pass them over."""
    _, url = sink
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    await eventually(lambda: _states(daemon, ["sent"]))
    await daemon.query(
        "INSERT INTO outbox (id, flip_id, notifier, event, next_attempt, created) "
        "SELECT 0, flip_id, 'pager', 'down', next_attempt, created FROM outbox"
    )
    await daemon.advance(61)
    await go_down(daemon)  # another alert wakes the dispatcher
    await eventually(lambda: _states(daemon, ["failed", "sent", "sent"]))


async def test_late_warns_when_a_check_enters_its_grace(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url, 'events = ["down", "up", "late"]'))
    check = await daemon.add(period=60.0, grace=30.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(59)
    assert recorder.received == []
    await daemon.advance(2)  # past the expected ping: late, not yet down
    await eventually(lambda: len(recorder.received) == 1)
    late = recorder.received[0]
    assert late["event"] == "late"
    assert late["summary"].startswith("backup is LATE: no ping since ")
    await daemon.advance(30)
    await eventually(lambda: len(recorder.received) == 2)
    assert recorder.received[1]["event"] == "down"
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(61)  # up again, then late again: one warning per missed ping
    await eventually(lambda: len(recorder.received) == 4)
    assert [e["event"] for e in recorder.received] == ["late", "down", "up", "late"]


async def test_a_ping_in_time_means_no_late_warning(start_daemon, sink) -> None:
    recorder, url = sink
    daemon = await start_daemon(webhook_config(url, 'events = ["late"]'))
    check = await daemon.add(period=60.0, grace=30.0)
    for _ in range(3):
        await daemon.client.get(f"/ping/{check.uuid}")
        await daemon.advance(55)
    await daemon.advance(10)  # now late
    await eventually(lambda: len(recorder.received) == 1)
    assert [e["event"] for e in recorder.received] == ["late"]


async def test_placeholders_in_the_url_are_filled_in_url_encoded(
    start_daemon, aiohttp_server: Any
) -> None:
    queries: list[tuple[str, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        queries.append((request.raw_path, dict(request.query)))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook/{slug}", handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("/hook/")) + "$slug?what=$summary&other=$nothing"
    daemon = await start_daemon(webhook_config(url))
    await go_down(daemon)
    await eventually(lambda: queries)
    raw_path, query = queries[0]
    assert raw_path.startswith("/hook/backup?what=backup%20is%20DOWN%20")
    assert query == {"what": "backup is DOWN (missed ping)", "other": "$nothing"}


async def test_a_cookie_set_by_the_target_is_not_sent_with_the_next_alert(
    start_daemon, aiohttp_server: Any
) -> None:
    cookies: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response()
        response.set_cookie("session", "from-the-first-alert")
        return response

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await aiohttp_server(app)
    # By name: aiohttp's default jar ignores cookies from bare IP addresses.
    daemon = await start_daemon(webhook_config(f"http://localhost:{server.port}/hook"))
    check = await go_down(daemon)
    await eventually(lambda: len(cookies) == 1)
    await daemon.client.get(f"/ping/{check.uuid}")
    await eventually(lambda: len(cookies) == 2)
    assert cookies == [None, None]
