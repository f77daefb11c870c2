"""Every ping URL form, method, status code and body of PROTOCOL.md §1, over real HTTP."""

from __future__ import annotations

import io

import pytest

from heartbeatd.core import model
from heartbeatd.store import SELECT_CHECK, Store
from tests.conftest import Daemon, eventually

RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"


async def last_ping(daemon: Daemon) -> tuple:
    rows = await daemon.query(
        "SELECT kind, exit_status, rid, method, body, body_size, remote_addr, ua, duration "
        "FROM pings ORDER BY id DESC LIMIT 1"
    )
    return rows[0]


async def status_of(daemon: Daemon, uuid: str) -> str:
    return (await daemon.query("SELECT status FROM checks WHERE uuid = ?", uuid))[0][0]


async def test_it_answers_ok_with_protocol_headers_and_records_the_ping(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}", headers={"User-Agent": "curl/8"})
    assert response.status == 200
    assert await response.text() == "OK"
    assert response.headers["Ping-Body-Limit"] == "100000"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert (await last_ping(daemon))[:4] == ("success", None, None, "GET")
    assert await status_of(daemon, check.uuid) == "up"


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT"])
async def test_it_counts_any_method_as_a_ping(daemon: Daemon, method: str) -> None:
    check = await daemon.add()
    response = await daemon.client.request(method, f"/ping/{check.uuid}")
    assert response.status == 200
    assert (await last_ping(daemon))[3] == method


async def test_a_trailing_slash_is_the_success_url_too(daemon: Daemon) -> None:
    check = await daemon.add()
    assert (await daemon.client.get(f"/ping/{check.uuid}/")).status == 200


async def test_it_keeps_the_post_body_as_raw_bytes(daemon: Daemon) -> None:
    check = await daemon.add()
    body = b"backup done \xff\xfe not utf-8"
    await daemon.client.post(f"/ping/{check.uuid}", data=body)
    _kind, _, _, _, stored, size, *_ = await last_ping(daemon)
    assert stored == body and size == len(body)


async def test_it_truncates_an_oversized_body_to_the_limit(start_daemon) -> None:
    daemon = await start_daemon("ping_body_limit = 1000\n")
    check = await daemon.add()
    response = await daemon.client.post(f"/ping/{check.uuid}", data=io.BytesIO(b"x" * 3_000_000))
    assert response.status == 200
    assert response.headers["Ping-Body-Limit"] == "1000"
    *_, stored, size, _, _, _ = await last_ping(daemon)
    assert len(stored) == 1000 and size == 3_000_000


@pytest.mark.parametrize(
    ("suffix", "kind", "exit_status", "status"),
    [
        ("start", "start", None, "new"),
        ("fail", "fail", None, "down"),
        ("log", "log", None, "new"),
        ("0", "success", 0, "up"),
        ("1", "fail", 1, "down"),
        ("255", "fail", 255, "down"),
    ],
)
async def test_each_suffix_records_its_kind(
    daemon: Daemon, suffix: str, kind: str, exit_status: int | None, status: str
) -> None:
    check = await daemon.add()
    response = await daemon.client.post(f"/ping/{check.uuid}/{suffix}")
    assert response.status == 200 and await response.text() == "OK"
    assert (await last_ping(daemon))[:2] == (kind, exit_status)
    assert await status_of(daemon, check.uuid) == status


async def test_an_exit_status_over_255_is_a_bad_url(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}/256")
    assert response.status == 400 and await response.text() == "invalid url format"


@pytest.mark.parametrize("suffix", ["-1", "abc", "start/extra", "１"])
async def test_other_suffixes_are_not_found(daemon: Daemon, suffix: str) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}/{suffix}")
    assert response.status == 404 and await response.text() == "not found"


@pytest.mark.parametrize(
    "token",
    [
        "0c6b1b2a-6d55-4bd1-8f3c-9a2b1c0d4e5f",  # well-formed, unknown
        "0C6B1B2A-6D55-4BD1-8F3C-9A2B1C0D4E5F",  # uppercase
        "0c6b1b2a6d554bd18f3c9a2b1c0d4e5f",  # no dashes
        "{0c6b1b2a-6d55-4bd1-8f3c-9a2b1c0d4e5f}",
        "..%2f..%2fetc%2fpasswd",
    ],
)
async def test_an_unknown_or_malformed_token_is_plain_not_found(daemon: Daemon, token: str) -> None:
    response = await daemon.client.get(f"/ping/{token}")
    assert response.status == 404
    assert await response.text() == "not found"


async def test_other_paths_are_plain_not_found_too(daemon: Daemon) -> None:
    response = await daemon.client.get("/nothing/here")
    assert response.status == 404 and await response.text() == "not found"


async def test_start_and_finish_with_a_rid_record_the_duration(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    daemon.clock.advance(12.5)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID.upper()}")
    kind, _, rid, *_, duration = await last_ping(daemon)
    assert (kind, rid, duration) == ("success", RID, 12.5)


@pytest.mark.parametrize("rid", ["12345", RID + "a", RID.replace("-", "")])
async def test_a_malformed_rid_is_refused(daemon: Daemon, rid: str) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}?rid={rid}")
    assert response.status == 400 and await response.text() == "invalid uuid format"
    assert await daemon.query("SELECT * FROM pings") == []


async def test_slug_urls_use_the_instance_ping_key(daemon: Daemon) -> None:
    await daemon.add("nightly-backup")
    key = await daemon.store.ping_key()
    response = await daemon.client.post(f"/ping/{key}/nightly-backup/fail")
    assert response.status == 200
    assert (await last_ping(daemon))[0] == "fail"
    wrong = await daemon.client.get("/ping/not-the-key/nightly-backup")
    assert wrong.status == 404 and await wrong.text() == "not found"


async def test_slug_urls_refuse_uppercase_and_unknown_slugs(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    upper = await daemon.client.get(f"/ping/{key}/Backup")
    assert upper.status == 400 and await upper.text() == "invalid url format"
    missing = await daemon.client.get(f"/ping/{key}/nothing")
    assert missing.status == 404 and await missing.text() == "not found"


async def test_create_1_provisions_a_check_and_answers_201(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    response = await daemon.client.post(f"/ping/{key}/new-job?create=1")
    assert response.status == 201 and await response.text() == "Created"
    rows = await daemon.query("SELECT name, slug, status, period, grace FROM checks")
    assert rows == [("new-job", "new-job", "up", 86400.0, 3600.0)]
    again = await daemon.client.post(f"/ping/{key}/new-job?create=1")
    assert again.status == 200 and await again.text() == "OK"


async def test_an_ambiguous_slug_is_a_conflict(daemon: Daemon) -> None:
    await daemon.add("a", slug="same")
    await daemon.add("b", slug="same")
    key = await daemon.store.ping_key()
    response = await daemon.client.get(f"/ping/{key}/same")
    assert response.status == 409 and await response.text() == "ambiguous slug"


async def test_a_post_only_check_logs_other_methods_as_ignored(daemon: Daemon) -> None:
    check = await daemon.add(methods="POST")
    response = await daemon.client.get(f"/ping/{check.uuid}/fail")
    assert response.status == 200
    assert (await last_ping(daemon))[0] == "ign"
    assert await status_of(daemon, check.uuid) == "new"


async def test_it_ignores_x_forwarded_for_from_untrusted_peers(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}", headers={"X-Forwarded-For": "203.0.113.9"})
    assert (await last_ping(daemon))[6] == "127.0.0.1"


async def test_it_believes_x_forwarded_for_from_a_trusted_proxy(start_daemon) -> None:
    daemon = await start_daemon('trusted_proxies = ["127.0.0.0/8"]\n')
    check = await daemon.add()
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.1"}
    await daemon.client.get(f"/ping/{check.uuid}", headers=headers)
    assert (await last_ping(daemon))[6] == "203.0.113.9"


async def test_it_cuts_the_user_agent_to_200_characters(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}", headers={"User-Agent": "u" * 500})
    assert len((await last_ping(daemon))[7]) == 200


async def test_it_keeps_only_the_newest_pings_per_check(start_daemon) -> None:
    daemon = await start_daemon("ping_retention = 5\n")
    check = await daemon.add()
    for _ in range(12):
        await daemon.client.get(f"/ping/{check.uuid}")
    rows = await daemon.query("SELECT n FROM pings ORDER BY n")
    assert [n for (n,) in rows] == [8, 9, 10, 11, 12]


async def test_a_full_database_answers_503_and_recovers(daemon: Daemon) -> None:
    check = await daemon.add()
    pages = (await daemon.query("PRAGMA page_count"))[0][0]
    await daemon.query(f"PRAGMA max_page_count = {pages}")
    for _ in range(50):  # enough pings to need a new page
        response = await daemon.client.post(f"/ping/{check.uuid}", data=b"z" * 2000)
        if response.status != 200:
            break
    assert response.status == 503
    assert await response.text() == "service unavailable"
    answered = (await daemon.query("SELECT count(*) FROM pings"))[0][0]
    await daemon.query("PRAGMA max_page_count = 1073741823")
    assert (await daemon.client.post(f"/ping/{check.uuid}")).status == 200
    assert (await daemon.query("SELECT count(*) FROM pings"))[0][0] == answered + 1


async def test_a_paused_check_is_unpaused_by_a_ping(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.store.change_state(check.slug, model.pause, 0)
    await daemon.client.get(f"/ping/{check.uuid}")
    assert await status_of(daemon, check.uuid) == "up"


async def test_a_rotation_by_another_process_is_seen_by_the_very_next_ping(daemon: Daemon) -> None:
    """The daemon caches pinged checks; a CLI change must never be answered from stale memory."""
    check = await daemon.add()
    assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 200  # now cached
    async with Store(daemon.store.path) as cli:  # a second connection, as the CLI opens
        rotated = await cli.rotate(check.uuid)
    assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 404
    assert (await daemon.client.get(f"/ping/{rotated.uuid}")).status == 200


LOG_REMINDING = '[[notifier]]\nname = "log"\ntype = "log"\nrepeat = "1h"\ndefault = true\n'


async def trace_writes(daemon: Daemon) -> list[str]:
    """Every statement the daemon's write connection runs from now on."""
    statements: list[str] = []
    await daemon.store._writer.run(lambda conn: conn.set_trace_callback(statements.append))
    return statements


def row_reads(statements: list[str], check_uuid: str) -> int:
    """How many of `statements` read the check's row: each ping not served from the cache."""
    return sum(1 for s in statements if s.startswith(SELECT_CHECK) and check_uuid in s)


async def outbox_is(daemon: Daemon, expected: list[tuple[str, str]]) -> bool:
    return await daemon.query("SELECT event, state FROM outbox ORDER BY id") == expected


async def test_reminders_scheduled_and_cancelled_leave_other_checks_cached(start_daemon) -> None:
    """A reminder touches only the outbox: the next ping of another check needs no read."""
    daemon = await start_daemon(LOG_REMINDING)
    backup = await daemon.add("backup", period=5.0, grace=1.0)
    other = await daemon.add("other", period=86400.0)
    await daemon.client.get(f"/ping/{backup.uuid}")
    statements = await trace_writes(daemon)
    await daemon.client.get(f"/ping/{other.uuid}")  # read once, then cached
    assert row_reads(statements, other.uuid) == 1

    await daemon.advance(7)  # backup is down: its alert is sent and a reminder scheduled
    await eventually(lambda: outbox_is(daemon, [("down", "sent"), ("repeat", "pending")]))
    await daemon.client.get(f"/ping/{other.uuid}")
    assert row_reads(statements, other.uuid) == 1

    await daemon.client.get(f"/ping/{backup.uuid}")  # recovery: the reminder is void
    await daemon.advance(3600)  # it falls due and is cancelled; backup goes down anew
    after = [("down", "sent"), ("repeat", "cancelled"), ("up", "sent"), ("down", "sent")]
    await eventually(lambda: outbox_is(daemon, [*after, ("repeat", "pending")]))
    await daemon.client.get(f"/ping/{other.uuid}")
    assert row_reads(statements, other.uuid) == 1


async def test_a_change_to_a_check_is_seen_by_its_very_next_ping(daemon: Daemon) -> None:
    """The other side of the cache: a write that changes a check drops what was cached."""
    check = await daemon.add(manual_resume=True)
    statements = await trace_writes(daemon)
    await daemon.client.get(f"/ping/{check.uuid}")  # cached while up
    await daemon.store.change_state(check.slug, model.pause, daemon.clock.now())
    await daemon.client.get(f"/ping/{check.uuid}")
    assert row_reads(statements, check.uuid) == 2
    assert await status_of(daemon, check.uuid) == "paused"  # the ping was ignored, as it must be
