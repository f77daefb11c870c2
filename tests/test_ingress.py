"""Other monitors' clients, replayed request by request against the real app (ingress.py).

Each test sends what the client sends (method, path, query, headers, body), then checks the
answer byte for byte and what was stored. borgmatic's requests are read from its hooks
(borgmatic/hooks/monitoring/{healthchecks,cronitor,uptime_kuma}.py): requests.post/get with
requests' default headers.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Daemon

REQUESTS_HEADERS = {
    "User-Agent": "python-requests/2.32.3",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
}
CURL = {"User-Agent": "curl/8.5.0", "Accept": "*/*"}
SERIES = "8f7d1c2e-3b4a-4c5d-9e6f-0a1b2c3d4e5f"


async def pings(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query(
        "SELECT kind, exit_status, rid, method, body, duration, ua FROM pings ORDER BY id"
    )


async def status_of(daemon: Daemon, check_uuid: str) -> str:
    return (await daemon.query("SELECT status FROM checks WHERE uuid = ?", check_uuid))[0][0]


async def assert_answer(response: Any, status: int, text: str, content_type: str) -> None:
    assert response.status == status
    assert await response.text() == text
    assert response.content_type == content_type


# -- Uptime Kuma ---------------------------------------------------------------------------


async def test_borgmatic_uptime_kuma_hook_start_finish_fail(daemon: Daemon) -> None:
    check = await daemon.add()
    push_url = f"/api/push/{check.uuid}"
    for query in ("status=up&msg=start", "status=up&msg=finish", "status=down&msg=fail"):
        response = await daemon.client.get(f"{push_url}?{query}", headers=REQUESTS_HEADERS)
        await assert_answer(response, 200, '{"ok":true}', "application/json")
        assert response.charset == "utf-8"
    stored = await pings(daemon)
    assert [(kind, body) for kind, _, _, _, body, _, _ in stored] == [
        ("success", b"start"),
        ("success", b"finish"),
        ("fail", b"fail"),
    ]
    assert stored[0][6] == "python-requests/2.32.3"
    assert await status_of(daemon, check.uuid) == "down"


async def test_kuma_push_without_parameters_is_an_up_beat(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/api/push/{check.uuid}", headers=CURL)
    assert response.status == 200 and await response.json() == {"ok": True}
    assert (await pings(daemon))[0][:5] == ("success", None, None, "GET", None)
    assert await status_of(daemon, check.uuid) == "up"


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD"])
async def test_kuma_push_takes_any_method(daemon: Daemon, method: str) -> None:
    check = await daemon.add()
    response = await daemon.client.request(method, f"/api/push/{check.uuid}?status=up")
    assert response.status == 200
    assert (await pings(daemon))[0][3] == method


async def test_kuma_ping_milliseconds_become_the_run_duration(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/api/push/{check.uuid}?status=up&msg=OK&ping=1234.5")
    assert (await pings(daemon))[0][5] == 1.2345
    assert (await daemon.query("SELECT last_duration FROM checks"))[0][0] == 1.2345


@pytest.mark.parametrize("value", ["abc", "-5", "90000000", "nan", ""])
async def test_a_kuma_ping_value_that_cannot_be_a_duration_still_counts_the_beat(
    daemon: Daemon, value: str
) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/api/push/{check.uuid}?status=up&ping={value}")
    assert response.status == 200 and await response.json() == {"ok": True}
    assert (await pings(daemon))[0][:1] + (await pings(daemon))[0][5:6] == ("success", None)


@pytest.mark.parametrize("token", [str(uuid.uuid4()), "abcd1234", "ABC"])
async def test_an_unknown_kuma_token_gets_kumas_own_404(daemon: Daemon, token: str) -> None:
    response = await daemon.client.get(f"/api/push/{token}?status=up&msg=OK&ping=")
    text = '{"ok":false,"msg":"Monitor not found or not active."}'
    await assert_answer(response, 404, text, "application/json")
    assert await pings(daemon) == []


async def test_kuma_push_answers_503_in_json_when_the_database_is_full(daemon: Daemon) -> None:
    check = await daemon.add()
    pages = (await daemon.query("PRAGMA page_count"))[0][0]
    await daemon.query(f"PRAGMA max_page_count = {pages}")
    msg = "z" * 2000
    for _ in range(50):  # enough pings to need a new page
        response = await daemon.client.get(f"/api/push/{check.uuid}?msg={msg}")
        if response.status != 200:
            break
    assert response.status == 503
    assert await response.json() == {"ok": False, "msg": "service unavailable"}
    await daemon.query("PRAGMA max_page_count = 1073741823")


# -- Cronitor ------------------------------------------------------------------------------


async def test_borgmatic_cronitor_hook_run_complete_fail(daemon: Daemon) -> None:
    check = await daemon.add()
    ping_url = f"/cronitor/{check.uuid}"
    response = await daemon.client.get(f"{ping_url}/run", headers=REQUESTS_HEADERS)
    await assert_answer(response, 200, "OK", "text/plain")
    assert await status_of(daemon, check.uuid) == "new"
    daemon.clock.advance(42.0)
    await daemon.client.get(f"{ping_url}/complete", headers=REQUESTS_HEADERS)
    assert await status_of(daemon, check.uuid) == "up"
    await daemon.client.get(f"{ping_url}/fail", headers=REQUESTS_HEADERS)
    assert await status_of(daemon, check.uuid) == "down"
    stored = await pings(daemon)
    assert [(kind, duration) for kind, _, _, _, _, duration, _ in stored] == [
        ("start", None),
        ("success", 42.0),
        ("fail", None),
    ]


async def test_cronitor_telemetry_by_ping_key_and_slug_pairs_runs_by_series(
    daemon: Daemon,
) -> None:
    await daemon.add("nightly-job")
    url = f"/cronitor/p/{await daemon.store.ping_key()}/nightly-job"
    response = await daemon.client.get(f"{url}?state=run&series=abc&host=db1", headers=CURL)
    await assert_answer(response, 200, "OK", "text/plain")
    daemon.clock.advance(7.0)
    response = await daemon.client.get(
        f"{url}?state=complete&series=abc&status_code=0&message=Processed+1423+records"
    )
    assert response.status == 200
    start, end = await pings(daemon)
    assert start[0] == "start" and end[:2] == ("success", 0)
    assert start[2] == end[2] and uuid.UUID(end[2])  # a stable rid made from "abc"
    assert end[4] == b"Processed 1423 records" and end[5] == 7.0


async def test_a_uuid_series_is_kept_as_the_rid(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/cronitor/{check.uuid}?state=run&series={SERIES}")
    assert (await pings(daemon))[0][2] == SERIES


@pytest.mark.parametrize(
    ("query", "kind", "exit_status", "status"),
    [
        ("state=complete&status_code=3", "fail", 3, "down"),
        ("state=fail&status_code=2&message=disk+full", "fail", 2, "down"),
        ("state=ok", "success", None, "up"),
        ("", "success", None, "up"),
        ("msg=legacy+message", "success", None, "up"),
    ],
)
async def test_cronitor_states_and_exit_codes(
    daemon: Daemon, query: str, kind: str, exit_status: int | None, status: str
) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/cronitor/{check.uuid}?{query}")
    assert response.status == 200
    assert (await pings(daemon))[0][:2] == (kind, exit_status)
    assert await status_of(daemon, check.uuid) == status


async def test_cronitor_duration_is_kept_when_no_run_was_started(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/cronitor/{check.uuid}?state=complete&duration=1823")
    assert (await pings(daemon))[0][5] == 1823.0


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("state=paused", "invalid state"),
        ("state=complete&status_code=one", "invalid status_code"),
        ("status_code=99999999999", "invalid status_code"),
    ],
)
async def test_malformed_cronitor_fields_are_refused(daemon: Daemon, query: str, text: str) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/cronitor/{check.uuid}?{query}")
    await assert_answer(response, 400, text, "text/plain")
    assert await pings(daemon) == []


@pytest.mark.parametrize(
    "path",
    [
        f"/cronitor/{uuid.uuid4()}/run",
        "/cronitor/d3x0c1/run",
        "/cronitor/{uuid}/pause",
        "/cronitor/p/not-the-key/backup?state=run",
        "/cronitor/p/{key}/no-such-job?state=run",
    ],
)
async def test_unknown_cronitor_monitors_are_plain_not_found(daemon: Daemon, path: str) -> None:
    check = await daemon.add()
    key = await daemon.store.ping_key()
    response = await daemon.client.get(path.format(uuid=check.uuid, key=key))
    await assert_answer(response, 404, "not found", "text/plain")
    assert await pings(daemon) == []


async def test_cronitor_fields_may_come_as_a_form_post(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.post(
        f"/cronitor/{check.uuid}",
        data="state=fail&message=quota+exceeded",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert (await pings(daemon))[0][:5] == ("fail", None, None, "POST", b"quota exceeded")


# -- Dead Man's Snitch ---------------------------------------------------------------------


async def test_snitch_check_in_with_a_message_answers_202(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(
        f"/snitch/{check.uuid}?m=Finished%20in%2023.8%20seconds.", headers=CURL
    )
    await assert_answer(response, 202, "OK", "text/plain")
    assert (await pings(daemon))[0][:5] == (
        "success", None, None, "GET", b"Finished in 23.8 seconds.",
    )  # fmt: skip
    assert await status_of(daemon, check.uuid) == "up"


@pytest.mark.parametrize(
    ("status", "kind", "exit_status"),
    [("0", "success", 0), ("1", "fail", 1), ("127", "fail", 127), ("error", "fail", None)],
)
async def test_snitch_exit_status(
    daemon: Daemon, status: str, kind: str, exit_status: int | None
) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/snitch/{check.uuid}?s={status}")
    assert response.status == 202
    assert (await pings(daemon))[0][:2] == (kind, exit_status)


async def test_snitch_reads_m_and_s_from_a_form_post(daemon: Daemon) -> None:
    """`curl -d m=... -d s=$? https://nosnch.in/<token>`."""
    check = await daemon.add()
    response = await daemon.client.post(
        f"/snitch/{check.uuid}",
        data="m=backup+failed&s=2",
        headers={**CURL, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 202
    assert (await pings(daemon))[0][:5] == ("fail", 2, None, "POST", b"backup failed")
    assert await status_of(daemon, check.uuid) == "down"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_post_body_without_form_fields_is_the_output(
    daemon: Daemon, content_type: str
) -> None:
    """curl labels `--data-raw "$output"` as a form; output is not a form to parse."""
    check = await daemon.add()
    headers = {"Content-Type": content_type}
    for path in (f"/snitch/{check.uuid}", f"/cronitor/{check.uuid}/complete"):
        await daemon.client.post(path, data=b"rsync: 12 files\nsent 3 MB=ok\n", headers=headers)
    assert [row[4] for row in await pings(daemon)] == [b"rsync: 12 files\nsent 3 MB=ok\n"] * 2


async def test_a_snitch_message_is_cut_to_the_body_limit(start_daemon: Any) -> None:
    daemon = await start_daemon("ping_body_limit = 4\n")
    check = await daemon.add()
    await daemon.client.get(f"/snitch/{check.uuid}?m=abcdefgh")
    assert (await daemon.query("SELECT body, body_size FROM pings"))[0] == (b"abcd", 8)


@pytest.mark.parametrize("token", [str(uuid.uuid4()), "c2354d53d2"])
async def test_an_unknown_snitch_is_plain_not_found(daemon: Daemon, token: str) -> None:
    response = await daemon.client.get(f"/snitch/{token}?m=hello")
    await assert_answer(response, 404, "not found", "text/plain")


# -- Gatus external endpoints --------------------------------------------------------------

# gatus-sdk @f7d1747 client.go:119-131 (doRequestWithAuth): the headers of every push; its
# endpoints.go:249-257 (PushExternalEndpointResult) builds the query with url.Values.Encode,
# which sorts the keys and writes a space as "+"; `error` and `duration` only when given.
GATUS_SDK = {"User-Agent": "GatusSDK/1.0", "Accept": "application/json", "Accept-Encoding": "gzip"}


async def gatus_push(daemon: Daemon, key: str, token: str, query: str) -> Any:
    headers = {**GATUS_SDK, "Authorization": f"Bearer {token}"}
    return await daemon.client.post(f"/api/v1/endpoints/{key}/external?{query}", headers=headers)


async def test_gatus_cli_pushes_success_and_failure_to_the_check_named_by_its_key(
    daemon: Daemon,
) -> None:
    """`gatus-cli external-endpoint push --key core_ext-ep-test --token <ping key> --success
    --duration 2s`, then the same with `--error "Connection timeout" --duration 1m30.5s`."""
    check = await daemon.add("core_ext-ep-test")
    key = await daemon.store.ping_key()
    response = await gatus_push(daemon, "core_ext-ep-test", key, "duration=2s&success=true")
    await assert_answer(response, 200, "", "text/plain")
    assert await status_of(daemon, check.uuid) == "up"
    query = "duration=1m30.5s&error=Connection+timeout&success=false"
    response = await gatus_push(daemon, "core_ext-ep-test", key, query)
    await assert_answer(response, 200, "", "text/plain")
    stored = await pings(daemon)
    assert [(kind, body, duration) for kind, _, _, _, body, duration, _ in stored] == [
        ("success", None, 2.0),
        ("fail", b"Connection timeout", 90.5),
    ]
    assert stored[0][6] == "GatusSDK/1.0"
    assert await status_of(daemon, check.uuid) == "down"


async def test_a_gatus_error_on_a_success_is_ignored_as_gatus_ignores_it(daemon: Daemon) -> None:
    await daemon.add("core_db")
    key = await daemon.store.ping_key()
    await gatus_push(daemon, "core_db", key, "error=stale&success=true")
    assert [(p[0], p[4], p[5]) for p in await pings(daemon)] == [("success", None, None)]


@pytest.mark.parametrize(
    ("query", "authorization", "key", "status", "text"),
    [
        ("", "Bearer {ping_key}", "core_db", 400, "missing or invalid success query parameter"),
        ("success=yes", "Bearer {ping_key}", "core_db", 400,
         "missing or invalid success query parameter"),
        ("success=true", None, "core_db", 401, "invalid Authorization header"),
        ("success=true", "Basic {ping_key}", "core_db", 401, "invalid Authorization header"),
        ("success=true", "Bearer wrong-key", "core_db", 404, "not found"),
        ("success=true", "Bearer {ping_key}", "core_nothing", 404, "not found"),
        ("success=true", "Bearer {ping_key}", "CORE_DB", 404, "not found"),
        ("duration=abc&success=true", "Bearer wrong-key", "core_db", 404, "not found"),
        ("duration=abc&success=true", "Bearer {ping_key}", "core_db", 400,
         'invalid duration: time: invalid duration "abc"'),
        ("duration=5&success=true", "Bearer {ping_key}", "core_db", 400,
         'invalid duration: time: missing unit in duration "5"'),
        ("duration=2d&success=true", "Bearer {ping_key}", "core_db", 400,
         'invalid duration: time: unknown unit "d" in duration "2d"'),
    ],
)  # fmt: skip
async def test_gatus_refusals_are_gatus_own_answers_and_record_nothing(
    daemon: Daemon, query: str, authorization: str | None, key: str, status: int, text: str
) -> None:
    """In Gatus's order: success, the header, the endpoint and its token, the duration."""
    await daemon.add("core_db")
    headers = dict(GATUS_SDK)
    if authorization is not None:
        headers["Authorization"] = authorization.format(ping_key=await daemon.store.ping_key())
    url = f"/api/v1/endpoints/{key}/external?{query}"
    await assert_answer(await daemon.client.post(url, headers=headers), status, text, "text/plain")
    assert await pings(daemon) == []


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("0", 0.0), ("1h2m3s", 3723.0), ("1.5h", 5400.0), ("300ms", 0.3), ("2\u00b5s", 2e-6),
     (".5s", 0.5), ("%2B4s", 4.0), ("-3s", None)],
)  # fmt: skip
async def test_gatus_durations_are_read_as_go_reads_them(
    daemon: Daemon, duration: str, seconds: float | None
) -> None:
    """Go's time.ParseDuration forms; a negative one is accepted by Gatus and dropped here,
    as any run length that cannot be one is (the push itself still counts)."""
    await daemon.add("core_db")
    response = await gatus_push(
        daemon, "core_db", await daemon.store.ping_key(), f"duration={duration}&success=true"
    )
    assert response.status == 200
    assert (await pings(daemon))[0][5] == pytest.approx(seconds)


# -- borgmatic's Healthchecks hook ---------------------------------------------------------


async def test_borgmatic_healthchecks_hook_start_log_finish(daemon: Daemon) -> None:
    """POST <ping_url>/start with an empty body, /log with the buffered log, then the bare URL
    with the log plus one more line (PROTOCOL.md: observed against borgmatic 2.1.10)."""
    check = await daemon.add()
    ping_url = f"/ping/{check.uuid}"
    log = "Creating archive\nKeeping 7 daily archives\n"
    await daemon.client.post(f"{ping_url}/start", data=b"", headers=REQUESTS_HEADERS)
    daemon.clock.advance(30.0)
    await daemon.client.post(f"{ping_url}/log", data=log.encode(), headers=REQUESTS_HEADERS)
    final = (log + "borgmatic: finished\n").encode()
    response = await daemon.client.post(ping_url, data=final, headers=REQUESTS_HEADERS)
    await assert_answer(response, 200, "OK", "text/plain")
    stored = await pings(daemon)
    assert [(kind, body, duration) for kind, _, _, _, body, duration, _ in stored] == [
        ("start", None, None),
        ("log", log.encode(), None),
        ("success", final, 30.0),
    ]
    assert await status_of(daemon, check.uuid) == "up"


async def test_borgmatic_healthchecks_hook_fail(daemon: Daemon) -> None:
    check = await daemon.add()
    ping_url = f"/ping/{check.uuid}"
    await daemon.client.post(f"{ping_url}/start", data=b"", headers=REQUESTS_HEADERS)
    response = await daemon.client.post(
        f"{ping_url}/fail", data=b"Repository locked\n", headers=REQUESTS_HEADERS
    )
    assert response.status == 200
    assert (await pings(daemon))[-1][:1] + (await pings(daemon))[-1][4:5] == (
        "fail", b"Repository locked\n",
    )  # fmt: skip
    assert await status_of(daemon, check.uuid) == "down"
