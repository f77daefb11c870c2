"""Silences mute alerts, never monitoring (issue 21).

Proves, on the real daemon with a ManualClock and a webhook sink on loopback: a check that goes
down inside a window is alerted once when it ends, saying so ("down since …, during Sunday
patching"); one alerted before a silence is not alerted again; a recovery inside a silence is
told only if its down was; a restart inside a window keeps these rules; the snooze URL works
in both ping forms, is bounded and keeps one snooze per check (a check slugged "snooze" is
still pinged); the CLI and the API round-trip; the status page names the silence; a recurring
window follows its time zone across DST; `[[silence]]` mistakes are located by file:line:key.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core.config import ConfigError, load_config
from heartbeatd.core.model import Check
from heartbeatd.core.silence import Silence, holding
from heartbeatd.daemon.reload import Reloader
from heartbeatd.notify.message_parts import details
from tests.conftest import Daemon, eventually
from tests.notify_helpers import JsonSink, json_sink, make_event, webhook_config

HOUR = 3600.0


@pytest.fixture
async def sink(aiohttp_server: Any) -> tuple[JsonSink, str]:
    return await json_sink(aiohttp_server)


def window_from(now: float, name: str = "Sunday patching", duration: str = "1h") -> str:
    """A one-off [[silence]] from `now` (UTC), holding every check."""
    start = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f'[[silence]]\nname = "{name}"\nstart = "{start}"\nduration = "{duration}"\n'


async def go_down(daemon: Daemon, slug: str = "backup") -> Any:
    """A check pinged now that goes down 6 s later (period 5 s, grace 1 s)."""
    check = await daemon.add(slug, period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    return check


async def settled(daemon: Daemon, holding: bool = False) -> list[tuple[Any, ...]]:
    """(slug, event, state) of every outbox row, once none is pending (nor held, unless
    `holding`: a silence is still on)."""

    async def rows() -> list[tuple[Any, ...]]:
        return await daemon.query(
            "SELECT c.slug, o.event, o.state FROM outbox o JOIN flips f ON f.id = o.flip_id "
            "JOIN checks c ON c.id = f.check_id ORDER BY o.id"
        )

    waiting = ("pending",) if holding else ("pending", "held")
    await eventually(lambda: _none_in(rows, waiting))
    return await rows()


async def _none_in(rows: Any, states: tuple[str, ...]) -> bool:
    return all(state not in states for _, _, state in await rows())


async def test_a_check_down_in_a_window_is_alerted_once_when_it_ends(
    start_daemon: Any, sink: tuple[JsonSink, str]
) -> None:
    recorder, url = sink
    daemon: Daemon = await start_daemon(webhook_config(url) + window_from(1_800_000_000.0))
    check = await go_down(daemon)
    assert (await daemon.store.get_check(check.uuid)).status == "down"  # monitoring goes on
    assert await settled(daemon, holding=True) == [("backup", "down", "held")]
    await daemon.advance(HOUR / 2)
    assert recorder.received == []
    await daemon.advance(HOUR / 2)
    await eventually(lambda: recorder.received)
    assert await settled(daemon) == [("backup", "down", "sent")]
    (alert,) = recorder.received
    assert alert["event"] == "down"
    assert alert["silence"] == "Sunday patching"
    assert alert["summary"] == (
        "backup is DOWN (missed ping), down since 2027-01-15 08:00:06 UTC, during Sunday patching"
    )


async def test_a_check_alerted_before_a_snooze_is_not_alerted_again(
    start_daemon: Any, sink: tuple[JsonSink, str]
) -> None:
    recorder, url = sink
    daemon: Daemon = await start_daemon(webhook_config(url))
    check = await go_down(daemon)
    await eventually(lambda: recorder.received)
    assert (await daemon.client.get(f"/ping/{check.uuid}/snooze?for=1h")).status == 200
    await daemon.client.get(f"/ping/{check.uuid}")  # up again: held
    await daemon.advance(7)  # and down again: held
    await daemon.advance(HOUR)
    rows = await settled(daemon)
    assert rows == [
        ("backup", "down", "sent"), ("backup", "up", "cancelled"), ("backup", "down", "cancelled")
    ]  # fmt: skip
    assert [event["event"] for event in recorder.received] == ["down"]


async def test_a_recovery_in_a_silence_is_told_only_if_its_down_was(
    start_daemon: Any, sink: tuple[JsonSink, str]
) -> None:
    recorder, url = sink
    daemon: Daemon = await start_daemon(webhook_config(url))
    told = await daemon.add("told", period=3 * HOUR, grace=HOUR)
    quiet = await daemon.add("quiet", period=3 * HOUR, grace=HOUR)
    await daemon.client.get(f"/ping/{told.uuid}/fail")
    await eventually(lambda: recorder.received)
    await daemon.client.get(f"/ping/{quiet.uuid}")
    for check in (told, quiet):
        await daemon.client.get(f"/ping/{check.uuid}/snooze?for=1h&reason=db+migration")
    await daemon.client.get(f"/ping/{quiet.uuid}/fail")  # down in the snooze
    for check in (told, quiet):
        await daemon.client.get(f"/ping/{check.uuid}")  # both recover in it
    await daemon.advance(HOUR)
    await eventually(lambda: len(recorder.received) == 2)
    assert [(e["check"]["slug"], e["event"]) for e in recorder.received] == [
        ("told", "down"), ("told", "up")
    ]  # fmt: skip
    assert recorder.received[1]["summary"].endswith(", during snooze: db migration")
    rows = await settled(daemon)
    assert ("quiet", "down", "cancelled") in rows and ("quiet", "up", "cancelled") in rows


async def test_a_restart_inside_a_window_keeps_its_rules(
    start_daemon: Any, sink: tuple[JsonSink, str]
) -> None:
    recorder, url = sink
    config = webhook_config(url) + window_from(1_800_000_000.0)
    first: Daemon = await start_daemon(config)
    check = await go_down(first)
    await first.client.close()
    first.clock.advance(HOUR / 2)
    second: Daemon = await start_daemon(config)
    await second.advance(60)
    assert recorder.received == []
    assert await settled(second, holding=True) == [("backup", "down", "held")]
    await second.advance(HOUR / 2)
    await eventually(lambda: recorder.received)
    assert [e["check"]["uuid"] for e in recorder.received] == [check.uuid]
    assert recorder.received[0]["silence"] == "Sunday patching"


async def test_a_reload_that_ends_a_window_tells_its_held_alert_at_once(
    start_daemon: Any, sink: tuple[JsonSink, str], tmp_path: Path
) -> None:
    recorder, url = sink
    path = tmp_path / "heartbeatd.toml"
    flags = {"db": str(tmp_path / "heartbeatd.db"), "listen": "127.0.0.1:0"}
    daemon: Daemon = await start_daemon(webhook_config(url) + window_from(1_800_000_000.0))
    await go_down(daemon)
    page = await (await daemon.client.get("/")).text()
    assert "silenced: Sunday patching" in page
    path.write_text(webhook_config(url))
    assert await Reloader(daemon.app, lambda: load_config(path, {}, flags)).reload()
    await eventually(lambda: recorder.received)
    assert recorder.received[0]["silence"] == "Sunday patching"
    assert "silenced:" not in await (await daemon.client.get("/")).text()


async def test_the_snooze_url_works_in_both_forms_bounded_one_per_check(
    daemon: Daemon,
) -> None:
    check = await daemon.add("backup")
    named_snooze = await daemon.add("snooze")
    key = await daemon.store.ping_key()
    by_uuid = await daemon.client.get(f"/ping/{check.uuid}/snooze?for=2h&reason=patching")
    assert (by_uuid.status, await by_uuid.text()) == (200, "OK")
    by_slug = await daemon.client.post(f"/ping/{key}/backup/snooze?for=30m")
    assert (by_slug.status, await by_slug.text()) == (200, "OK")
    snoozes = await daemon.store.snoozes(daemon.clock.now())
    assert list(snoozes) == [check.id]  # the second replaced the first
    assert snoozes[check.id].until == daemon.clock.now() + 1800
    assert snoozes[check.id].reason == ""
    assert (await daemon.client.get(f"/ping/{check.uuid}/snooze?for=8d")).status == 400
    assert (await daemon.client.get(f"/ping/{check.uuid}/snooze")).status == 400
    unknown = await daemon.client.get("/ping/00000000-0000-4000-8000-000000000000/snooze?for=1h")
    assert (unknown.status, await unknown.text()) == (404, "not found")
    long_reason = await daemon.client.get(f"/ping/{check.uuid}/snooze?for=1h&reason={'x' * 5000}")
    assert long_reason.status == 200
    assert len((await daemon.store.snoozes(daemon.clock.now()))[check.id].reason) == 200
    # A check slugged "snooze" is still pinged by its slug URL, and is not snoozed by it.
    assert (await daemon.client.get(f"/ping/{key}/snooze")).status == 200
    assert (await daemon.store.get_check(named_snooze.uuid)).n_pings == 1
    assert (await daemon.client.get(f"/ping/{check.uuid}/snooze?for=0")).status == 200
    assert await daemon.store.snoozes(daemon.clock.now()) == {}


def test_the_cli_adds_lists_and_removes_a_snooze(hb: Any) -> None:
    assert hb("check", "add", "backup", "--period", "1h").exit_code == 0
    added = hb("silence", "add", "backup", "--for", "2h", "--reason", "disk swap")
    assert added.exit_code == 0 and "Snoozed 'backup' for 2h" in added.output
    listed = hb("silence", "list")
    assert "snooze: disk swap" in listed.output and "backup" in listed.output
    assert hb("silence", "add", "backup", "--for", "8d").exit_code == 2
    assert hb("silence", "remove", "backup").exit_code == 0
    assert "No silences" in hb("silence", "list").output
    again = hb("silence", "remove", "backup")
    assert again.exit_code == 1 and "'backup' is not snoozed" in again.output


async def test_the_api_creates_lists_and_deletes_a_snooze(start_daemon: Any) -> None:
    daemon: Daemon = await start_daemon(window_from(1_800_000_000.0, "freeze", "2h"))
    now = daemon.clock.now()
    rw, _ = await daemon.store.create_api_key("writer", False, now, "cli")
    write = {"X-Api-Key": rw}
    ro, _ = await daemon.store.create_api_key("reader", True, now, "cli")
    check = await daemon.add("backup")
    body = {"check": check.uuid, "for": "2h", "reason": "disk swap"}
    refused = await daemon.client.post("/api/v3/silences/", json=body, headers={"X-Api-Key": ro})
    assert refused.status == 401
    created = await daemon.client.post("/api/v3/silences/", json=body, headers=write)
    assert created.status == 201
    assert (await created.json())["ends"] == "2027-01-15T10:00:00+00:00"
    listed = await daemon.client.get("/api/v3/silences/", headers={"X-Api-Key": ro})
    shown = (await listed.json())["silences"]
    assert [(s["kind"], s["name"]) for s in shown] == [
        ("window", "freeze"), ("snooze", "snooze: disk swap")
    ]  # fmt: skip
    for wrong in ({**body, "for": "30d"}, {**body, "for": 0}, {**body, "reason": 7}):
        response = await daemon.client.post("/api/v3/silences/", json=wrong, headers=write)
        assert response.status == 400
    gone = await daemon.client.delete(f"/api/v3/silences/{check.uuid}", headers=write)
    assert gone.status == 200
    assert [s["kind"] for s in (await gone.json())["silences"]] == ["window"]
    again = await daemon.client.delete(f"/api/v3/silences/{check.uuid}", headers=write)
    assert again.status == 404
    spec = (await (await daemon.client.get("/api/v3/openapi.json")).json())["paths"]
    assert {"/api/v3/silences/", "/api/v3/silences/{code}"} <= set(spec)


async def test_the_status_page_names_the_silence_holding_a_check(start_daemon: Any) -> None:
    daemon: Daemon = await start_daemon(
        window_from(1_800_000_000.0) + 'tags = ["nas"]\n'
    )  # fmt: skip
    await daemon.add("nas-backup", tags=("nas",))
    other = await daemon.add("web")
    await daemon.client.get(f"/ping/{other.uuid}/snooze?for=1h&reason=deploy")
    page = await (await daemon.client.get("/")).text()
    assert "silenced: Sunday patching until 2027-01-15 09:00:00 UTC" in page
    assert "silenced: snooze: deploy until" in page
    check_page = await (await daemon.client.get(f"/checks/{other.uuid}")).text()
    assert "Silenced by snooze: deploy" in check_page


def _check(slug: str, tags: str = "") -> Check:
    return Check(
        id=1, uuid="u", name=slug, slug=slug, tags=tags, desc="", period=60.0, cron=None,
        tz="UTC", grace=60.0, misses=1, max_runtime=None, manual_resume=False, methods="",
        notifiers=None, managed=False, created=0.0, status="up", last_ping=None,
        last_start=None, last_start_rid=None, last_duration=None, n_pings=0, alert_after=None,
    )  # fmt: skip


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_recurring_window_keeps_its_local_start_across_dst() -> None:
    """03:00 Berlin every Sunday, 2h: 02:00 UTC in winter, 01:00 UTC in summer."""
    patching = Silence("patching", 2 * HOUR, cron="0 3 * * 0", tz="Europe/Berlin", tags=("nas",))
    nas = _check("nas-backup", "nas")
    winter = holding(nas, _utc("2026-03-22T02:30"), [patching])
    assert winter is not None and winter.until == _utc("2026-03-22T04:00")
    summer = holding(nas, _utc("2026-03-29T01:30"), [patching])  # the day clocks go forward
    assert summer is not None and summer.until == _utc("2026-03-29T03:00")
    assert holding(nas, _utc("2026-03-29T03:00"), [patching]) is None
    assert holding(_check("web"), _utc("2026-03-29T01:30"), [patching]) is None


def test_a_window_search_never_spins() -> None:
    """A window every minute lasting a day is one held stretch, found in bounded work."""
    always = Silence("always", 86400.0, cron="* * * * *")
    started = time.perf_counter()
    hold = holding(_check("x"), 1_800_000_000.0, [always])
    assert hold is not None and hold.until > 1_800_000_000.0
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ('name = "a"\ncron = "0 3 * * 0"\n', "silence.duration: required"),
        ('name = "a"\nduration = "2h"\n', "silence.cron: give either cron"),
        (
            'name = "a"\nduration = "2h"\ncron = "0 3 * *"\n',
            "silence.cron: '0 3 * *' is neither cron (5 fields) nor OnCalendar",
        ),
        ('name = "a"\nduration = "40d"\nstart = "2026-12-24T18:00"\n', "silence.duration: must"),
        ('name = "a"\nduration = "2h"\nstart = "christmas"\n', "silence.start: expected a local"),
        ('name = "a"\nduration = "2h"\ncron = "0 3 * * 0"\ntz = "Mars/Base"\n', "silence.tz"),
        ('name = "a"\nduration = "2h"\ncron = "0 3 * * 0"\nwhen = 1\n', "silence.when: unknown"),
    ],
)
def test_silence_mistakes_are_located(tmp_path: Path, table: str, where: str) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(f"listen = '127.0.0.1:0'\n\n[[silence]]\n{table}")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, {})
    assert f"{path}:" in str(caught.value) and where in str(caught.value)


def test_every_notifier_kind_gets_the_end_of_silence_text() -> None:
    """Chat kinds lay out summary + details (message_parts), email and shell the text,
    webhooks the JSON: each carries the silence."""
    down = replace(make_event("down"), silence="Sunday patching")
    assert down.summary == (
        "backup is DOWN (missed ping), down since 2027-01-15 08:00:00 UTC, during Sunday patching"
    )
    assert "Held during: Sunday patching (told when it ended)" in details(down)
    assert "Held during: Sunday patching" in down.text()
    assert down.as_dict()["silence"] == "Sunday patching"
    up = replace(make_event("up"), silence="Sunday patching")
    assert up.summary == "backup is UP again after 1h down, during Sunday patching"
    assert make_event("down").as_dict()["silence"] is None
