"""Sentry crons against heartbeatd (web/sentry.py): the real sentry_sdk, unchanged, with a DSN
that names heartbeatd, and Sentry's HTTP check-in URL.

What it proves (issue 20, every client that already monitors jobs works unchanged):
- capture_checkin and the @monitor decorator, sent by the SDK's own transport (gzip, the key
  in X-Sentry-Auth), become pings of the check whose slug is the monitor slug: in_progress a
  start, ok a success, error a failure, the check_in_id the run id, so a failing decorated
  job is recorded as a failed run with its duration;
- a check-in's monitor_config creates the check or changes its schedule, which then takes
  effect (the check goes down on the new schedule), with the API's bounds: an invalid value
  is dropped and the check-in still counts; a config-file check is never changed by one;
- a wrong key records nothing, and is refused before its body is read; an error event, an
  attachment and a client report in an envelope are dropped, its check-in kept; an envelope
  past its cap is refused with 413;
- the HTTP form, /api/<project>/cron/<slug>/<key>/?status=..., as curl sends it.
The parsing itself (envelope, auth header, monitor_config) is tested without a server.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.envelope import Envelope, Item, PayloadRef

from heartbeatd.web import sentry
from tests.conftest import Daemon

RUN = "5742325fe3c44d03ba724c6b804e7dff"  # a check_in_id as the SDK makes them
CRON_CONFIG = {
    "schedule": {"type": "crontab", "value": "0 3 * * *"},
    "checkin_margin": 5,
    "max_runtime": 30,
    "timezone": "Europe/Berlin",
    "failure_issue_threshold": 2,
    "recovery_threshold": 1,
}


class Sdk:
    """The real sentry_sdk (global state: one client at a time), sending to a daemon.

    Only crons are under test, so the SDK's integrations stay off: its aiohttp integration
    would otherwise instrument the daemon's own server in this process."""

    async def init(self, daemon: Daemon, key: str | None = None) -> None:
        key = key or await daemon.store.ping_key()
        port = daemon.client.server.port
        sentry_sdk.init(
            dsn=f"http://{key}@127.0.0.1:{port}/42",
            default_integrations=False,
            auto_enabling_integrations=False,
        )

    async def run(self, job: Callable[[], object]) -> None:
        """`job` in a thread, then the SDK flushed: its transport blocks, and the event loop
        serving the daemon must keep turning meanwhile."""

        def run_and_flush() -> None:
            try:
                job()
            finally:
                sentry_sdk.flush(timeout=5)

        await asyncio.to_thread(run_and_flush)

    def close(self) -> None:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
async def sdk() -> AsyncIterator[Sdk]:
    made = Sdk()
    yield made
    await asyncio.to_thread(made.close)


async def pings(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query("SELECT kind, rid, duration, ua FROM pings ORDER BY id")


async def check_row(daemon: Daemon, slug: str) -> tuple[Any, ...]:
    sql = "SELECT cron, tz, period, grace, max_runtime, failures, status FROM checks WHERE slug = ?"
    return (await daemon.query(sql, slug))[0]


# -- the SDK ---------------------------------------------------------------------------------


async def test_capture_checkin_with_monitor_config_creates_the_check_and_counts(
    daemon: Daemon, sdk: Sdk
) -> None:
    await sdk.init(daemon)
    await sdk.run(lambda: capture_checkin("nightly", status="ok", monitor_config=CRON_CONFIG))
    # grace: checkin_margin plus max_runtime (see sentry.monitor_fields); failures: the threshold
    assert await check_row(daemon, "nightly") == (
        "0 3 * * *", "Europe/Berlin", None, 35 * 60.0, 30 * 60.0, 2, "up",
    )  # fmt: skip
    ((kind, rid, duration, ua),) = await pings(daemon)
    assert (kind, duration) == ("success", None)
    assert uuid.UUID(rid) and ua.startswith("sentry.python/")


async def test_a_check_in_without_config_pings_an_existing_check(daemon: Daemon, sdk: Sdk) -> None:
    await daemon.add("backup")
    await sdk.init(daemon)
    await sdk.run(lambda: capture_checkin("backup", status="error", duration=12.5))
    assert [(k, d) for k, _, d, _ in await pings(daemon)] == [("fail", 12.5)]
    assert (await check_row(daemon, "backup"))[-1] == "down"


async def test_the_monitor_decorator_records_a_failing_job_as_a_failed_run(
    daemon: Daemon, sdk: Sdk
) -> None:
    await daemon.add("report", period=3600.0, grace=600.0)
    await sdk.init(daemon)
    loop = asyncio.get_running_loop()

    @sentry_sdk.monitor(monitor_slug="report")
    def report() -> None:
        sentry_sdk.flush(timeout=5)  # the in_progress check-in is in
        asyncio.run_coroutine_threadsafe(daemon.advance(7), loop).result()
        raise RuntimeError("disk full")

    def job() -> None:
        with pytest.raises(RuntimeError):
            report()

    await sdk.run(job)
    (start, fail) = await pings(daemon)
    assert (start[0], fail[0]) == ("start", "fail")
    assert start[1] == fail[1] is not None  # the check_in_id paired them
    assert fail[2] == 7.0
    assert (await check_row(daemon, "report"))[-1] == "down"


async def test_a_changed_schedule_is_saved_and_goes_down_on_time(daemon: Daemon, sdk: Sdk) -> None:
    """A Celery beat entry's config (an interval), then the same task every 10 minutes."""
    hourly = {"schedule": {"type": "interval", "value": 1, "unit": "hour"}, "timezone": "UTC"}
    await sdk.init(daemon)
    await sdk.run(lambda: capture_checkin("Sync Users", status="ok", monitor_config=hourly))
    assert (await check_row(daemon, "sync-users"))[2] == 3600.0
    every_10 = {
        "schedule": {"type": "interval", "value": 10, "unit": "minute"},
        "checkin_margin": 1,
        "max_runtime": 1,
    }
    await sdk.run(lambda: capture_checkin("Sync Users", status="ok", monitor_config=every_10))
    assert (await check_row(daemon, "sync-users"))[2:5] == (600.0, 120.0, 60.0)
    await daemon.advance(600 + 119)
    assert (await check_row(daemon, "sync-users"))[-1] == "up"
    await daemon.advance(2)
    assert (await check_row(daemon, "sync-users"))[-1] == "down"
    assert len(await daemon.store.list_checks()) == 1


async def test_a_job_that_starts_on_time_and_runs_10_minutes_never_alerts(
    daemon: Daemon,
) -> None:
    """checkin_margin 5, max_runtime 30: Sentry calls such runs healthy every day, and so must
    heartbeatd, though a start ping does not stop its missed-ping clock (a grace of the margin
    alone went down at 03:05 each day, and up again at 03:10)."""
    key = await daemon.store.ping_key()
    config = {**CRON_CONFIG, "timezone": "UTC", "failure_issue_threshold": 1}
    await daemon.advance(86400 - (daemon.clock.now() - 3 * 3600) % 86400)  # 03:00 UTC
    for day in range(3):
        run = {"check_in_id": str(uuid.uuid4()), "monitor_config": config}
        url = f"/api/42/cron/nightly/{key}/"
        started = await daemon.client.post(url, json={**run, "status": "in_progress"})
        await daemon.advance(10 * 60)
        assert (await check_row(daemon, "nightly"))[-1] != "down", day
        finished = await daemon.client.post(url, json={**run, "status": "ok"})
        assert (started.status, finished.status) == (202, 202)
        await daemon.advance(86400 - 10 * 60)
    await daemon.advance(35 * 60 + 1)  # the fourth run never starts: down once its grace ends
    assert (await check_row(daemon, "nightly"))[-1] == "down"
    flips = await daemon.query("SELECT old_status, new_status FROM flips")
    assert flips == [("new", "up"), ("up", "down")]


async def test_an_invalid_config_value_is_dropped_and_the_check_in_counts(
    daemon: Daemon, sdk: Sdk
) -> None:
    await daemon.add("backup", cron="0 4 * * *", period=None, grace=600.0)
    bad = {"schedule": {"type": "crontab", "value": "61 * * * *"}, "timezone": "Mars/Olympus"}
    await sdk.init(daemon)
    await sdk.run(lambda: capture_checkin("backup", status="ok", monitor_config=bad))
    cron, tz, *_ = await check_row(daemon, "backup")
    assert (cron, tz) == ("0 4 * * *", "UTC")
    assert [p[0] for p in await pings(daemon)] == ["success"]
    # a new monitor whose schedule is refused is not made, and its check-in goes nowhere
    await sdk.run(lambda: capture_checkin("fresh", status="ok", monitor_config=bad))
    assert [c.slug for c in await daemon.store.list_checks()] == ["backup"]
    assert len(await pings(daemon)) == 1


async def test_a_config_file_check_is_not_changed_by_a_check_in(
    start_daemon: Callable[..., Any], sdk: Sdk, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = await start_daemon('[[check]]\nname = "Nightly"\nslug = "nightly"\nperiod = "1d"\n')
    await sdk.init(daemon)
    with caplog.at_level(logging.INFO, logger="heartbeatd"):
        for _ in range(2):
            await sdk.run(
                lambda: capture_checkin("nightly", status="ok", monitor_config=CRON_CONFIG)
            )
    cron, _, period, grace, *_ = await check_row(daemon, "nightly")
    assert (cron, period, grace) == (None, 86400.0, 3600.0)
    assert [p[0] for p in await pings(daemon)] == ["success", "success"]
    noted = [r for r in caplog.records if "declared in the config file" in r.getMessage()]
    assert len(noted) == 1 and noted[0].levelno == logging.INFO


async def test_a_wrong_key_records_nothing(daemon: Daemon, sdk: Sdk) -> None:
    await daemon.add("backup")
    await sdk.init(daemon, key="not-the-ping-key")
    await sdk.run(lambda: capture_checkin("backup", status="ok"))
    await sdk.run(lambda: capture_checkin("made-up", status="ok", monitor_config=CRON_CONFIG))
    assert await pings(daemon) == []
    assert [c.slug for c in await daemon.store.list_checks()] == ["backup"]
    await sdk.init(daemon)  # the same check-in with the right key is recorded
    await sdk.run(lambda: capture_checkin("backup", status="ok"))
    assert [p[0] for p in await pings(daemon)] == ["success"]


# -- envelopes as they come ------------------------------------------------------------------


def envelope_bytes(*items: Item, header: dict[str, Any] | None = None) -> bytes:
    """An envelope as the SDK serializes it."""
    return Envelope(headers=header or {"event_id": RUN}, items=list(items)).serialize()


def check_in_item(slug: str, status: str = "ok") -> Item:
    payload = {"type": "check_in", "monitor_slug": slug, "check_in_id": RUN, "status": status}
    return Item(payload=PayloadRef(json=payload), type="check_in")


async def post_envelope(daemon: Daemon, body: bytes, **headers: str) -> Any:
    return await daemon.client.post(
        "/api/42/envelope/",
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-sentry-envelope",
                 **headers},
    )  # fmt: skip


def auth(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}


async def test_an_error_event_beside_a_check_in_is_dropped(daemon: Daemon) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    event = Item(payload=PayloadRef(json={"level": "error", "message": "x" * 5000}), type="event")
    attachment = Item(payload=PayloadRef(bytes=b"\x00\xff" * 1000), type="attachment")
    report = Item(payload=PayloadRef(json={"discarded_events": []}), type="client_report")
    body = envelope_bytes(event, attachment, check_in_item("backup"), report)
    response = await post_envelope(daemon, body, **auth(key))
    assert response.status == 200 and await response.json() == {}
    assert [p[:2] for p in await pings(daemon)] == [("success", str(uuid.UUID(RUN)))]


async def test_the_key_may_come_in_the_query_or_the_envelope_dsn(daemon: Daemon) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    in_query = await daemon.client.post(
        f"/api/42/envelope/?sentry_key={key}&sentry_version=7",
        data=envelope_bytes(check_in_item("backup")),
    )
    in_dsn = envelope_bytes(check_in_item("backup"), header={"dsn": f"http://{key}@h/42"})
    wrong_dsn = envelope_bytes(check_in_item("backup"), header={"dsn": "http://nope@h/42"})
    assert in_query.status == 200
    assert (await post_envelope(daemon, in_dsn)).status == 200
    refused = await post_envelope(daemon, wrong_dsn)
    assert (refused.status, await refused.text()) == (404, "not found")
    assert len(await pings(daemon)) == 2


async def test_an_envelope_past_its_cap_is_refused_with_413(daemon: Daemon) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    padding = Item(payload=PayloadRef(bytes=b"x" * sentry.ENVELOPE_LIMIT), type="attachment")
    big = envelope_bytes(check_in_item("backup"), padding)
    assert (await post_envelope(daemon, big, **auth(key))).status == 413
    keyless = envelope_bytes(
        check_in_item("backup"),
        Item(payload=PayloadRef(bytes=b"x" * sentry.KEYLESS_ENVELOPE), type="attachment"),
        header={"dsn": f"http://{key}@h/42"},
    )
    assert (await post_envelope(daemon, keyless)).status == 413
    assert await pings(daemon) == []


async def test_an_envelope_that_will_not_decode_is_400_and_records_nothing(
    daemon: Daemon,
) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    headers = {"Content-Encoding": "gzip", "Connection": "close", **auth(key)}
    response = await daemon.client.post("/api/42/envelope/", data=b"not gzip", headers=headers)
    assert (response.status, await response.text()) == (400, "invalid request body")
    broken = await post_envelope(daemon, b'{}\n{"type":"check_in","length":99}\n{}', **auth(key))
    assert (broken.status, await broken.text()) == (400, "invalid envelope")
    assert await pings(daemon) == []
    assert (
        await post_envelope(daemon, envelope_bytes(check_in_item("backup")), **auth(key))
    ).status == 200


async def test_a_wrong_key_is_refused_before_the_body_is_read(daemon: Daemon) -> None:
    """Only the headers are sent, declaring 1 MB: the answer cannot wait for the body."""
    port = daemon.client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/42/envelope/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        b"X-Sentry-Auth: Sentry sentry_key=guess, sentry_version=7\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(12), timeout=2)
    writer.close()
    assert answer == b"HTTP/1.1 404"
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    body = envelope_bytes(check_in_item("backup"))
    assert (await post_envelope(daemon, body, **auth(key))).status == 200


# -- the HTTP form ---------------------------------------------------------------------------


async def test_the_http_check_in_pairs_a_run_as_curl_sends_it(daemon: Daemon) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    run = str(uuid.uuid4())
    start = await daemon.client.get(
        f"/api/42/cron/backup/{key}/?status=in_progress&check_in_id={run}&environment=prod"
    )
    assert (start.status, await start.text()) == (202, "")
    await daemon.advance(3)
    finish = await daemon.client.post(f"/api/42/cron/backup/{key}?status=ok&check_in_id={run}")
    assert finish.status == 202
    assert [p[:3] for p in await pings(daemon)] == [("start", run, None), ("success", run, 3.0)]
    notes = await daemon.query("SELECT metrics, notes FROM pings")
    assert notes == [(None, None), (None, None)]  # Sentry's parameters are not metrics


async def test_the_http_check_in_takes_the_key_from_the_header_and_a_json_body(
    daemon: Daemon,
) -> None:
    key = await daemon.store.ping_key()
    body = {"status": "ok", "monitor_config": {"schedule": {"type": "crontab", "value": "@daily"}}}
    response = await daemon.client.post("/api/42/cron/nightly/", json=body, headers=auth(key))
    assert response.status == 202
    assert (await check_row(daemon, "nightly"))[:2] == ("0 0 * * *", "UTC")
    assert [p[0] for p in await pings(daemon)] == ["success"]


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/api/42/cron/backup/not-the-key/?status=ok", 404, "not found"),
        ("/api/42/cron/no-such-check/{key}/?status=ok", 404, "not found"),
        ("/api/42/cron/backup/{key}/?status=missed", 400, None),
        ("/api/42/cron/backup/{key}/?status=ok&check_in_id=12", 400, None),
        ("/api/42/cron/backup/{key}/extra/?status=ok", 404, "not found"),
    ],
)
async def test_the_http_check_in_refuses_and_records_nothing(
    daemon: Daemon, path: str, status: int, text: str | None
) -> None:
    await daemon.add("backup")
    key = await daemon.store.ping_key()
    response = await daemon.client.get(path.format(key=key))
    assert response.status == status
    if text is not None:
        assert await response.text() == text
    assert await pings(daemon) == []
    accepted = await daemon.client.get(f"/api/42/cron/backup/{key}/?status=ok")
    assert accepted.status == 202  # the same door, rightly used
    assert [p[0] for p in await pings(daemon)] == ["success"]


# -- parsing, without a server ---------------------------------------------------------------


def test_an_envelope_is_read_by_its_item_lengths_and_lines() -> None:
    check_in = {"monitor_slug": "a", "status": "ok"}
    data = b"\n".join([
        b'{"event_id":"x"}',
        b'{"type":"event","length":10}', b'{"a":"\n\n"}',  # a payload holding newlines
        b'{"type":"check_in"}', json.dumps(check_in).encode(),  # no length: up to the line end
        b'{"type":"check_in","length":7}', b"not{js}",
        b"",
    ])  # fmt: skip
    header, at = sentry.envelope_header(data)
    assert header == {"event_id": "x"}
    assert sentry.check_in_payloads(data, at) == [check_in, None]
    for broken in (b"[]\n", b"{}\n[1]\n", b'{}\n{"length":-1}\n', b'{}\n{"length":3}\nab'):
        with pytest.raises(ValueError):
            sentry.check_in_payloads(broken, sentry.envelope_header(broken)[1])


def test_the_key_is_read_from_sentrys_auth_header() -> None:
    header = "Sentry sentry_version=5, sentry_client=raven-python/6.0, sentry_key=abc"
    assert sentry.header_key(header) == "abc"
    assert sentry.header_key("Bearer sentry_key=abc") is None
    assert sentry.dsn_key("https://abc@o0.ingest.sentry.io/42") == "abc"
    assert sentry.dsn_key("http://[::1") is None


def test_monitor_slugs_are_slugified_as_sentry_does() -> None:
    assert sentry.monitor_slug("Nightly Backup") == "nightly-backup"
    assert sentry.monitor_slug("  Ünïcode.job  ") == "unicodejob"
    assert sentry.monitor_slug("!!!") == ""


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        (
            {"schedule": {"type": "interval", "value": 2, "unit": "week"}},
            {"timeout": 14 * 86400, "grace": 31 * 60},
        ),
        ({"schedule": {"type": "interval", "value": 1, "unit": "month"}}, {"timeout": 31 * 86400}),
        ({"schedule": {"type": "interval", "value": 2, "unit": "year"}}, {}),  # past 365 days
        ({"schedule": {"type": "interval", "value": 1.5, "unit": "hour"}}, {}),
        ({"schedule": {"type": "crontab", "value": "@hourly"}}, {"schedule": "0 * * * *"}),
        ({"schedule": {"type": "crontab", "value": "* * *"}}, {}),
        ({"schedule": ["crontab"], "checkin_margin": "5"}, {"grace": 31 * 60}),
        ({"failure_issue_threshold": 500}, {"failures": None}),
        ({"recovery_threshold": 3}, {"recoveries": 3}),
        ({"timezone": "Nowhere/Else"}, {"tz": None}),
    ],
)
def test_monitor_config_gets_the_apis_bounds(
    config: dict[str, Any], fields: dict[str, Any]
) -> None:
    spec = sentry.monitor_fields(config)
    for field, value in fields.items():
        assert spec.get(field) == value, field
    if not any(f in fields for f in ("timeout", "schedule")):
        assert "timeout" not in spec and "schedule" not in spec
