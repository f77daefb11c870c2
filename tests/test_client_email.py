"""E-mailed pings (issue 20): what Healthchecks users send to <uuid>@hc.example.net works here.

Python's smtplib, run in a thread, sends real mail to the SMTP listener of a real daemon on a
loopback port (`smtp_listen`): a mail to a check's UUID or to <ping-key>+<slug> pings it, with
the message as the ping's body, cut to ping_body_limit; an unknown recipient is refused at
RCPT; the check's filter_subject and filter_body keywords decide success, failure, start, or
ignore (Healthchecks' smtpd semantics), set and read back through the management API, the
deprecated subject/subject_fail fields included; a silent client is dropped after
smtp_timeout, and a source guessing addresses is slowed like one guessing URLs. Last, a real
`heartbeatd serve` process takes mail and logs no recipient (a check's secret).
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core.config import ConfigError
from heartbeatd.web import smtp
from heartbeatd.web.ratelimit import MISS_BURST
from heartbeatd.web.smtp import LISTENER
from tests.conftest import Daemon, MakeConfig, eventually
from tests.test_crash import Daemon as Process
from tests.test_crash import free_port, read_db

StartDaemon = Callable[..., Any]
SENDER = "cron@backup.example.org"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


def message(subject: str = "Backup report", text: str = "All files copied.") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: x@hc.example.net\r\nSubject: {subject}\r\n\r\n{text}\r\n".encode()
    )


def send_mail(port: int, to: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail (blocking): the recipients it was refused, or an SMTPException."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        return smtp.sendmail(SENDER, to, data)


async def mail(daemon: Daemon, to: list[str], data: bytes | None = None) -> dict[str, Any]:
    port = daemon.app[LISTENER].port
    return await asyncio.to_thread(send_mail, port, to, data or message())


@pytest.fixture
async def smtp_daemon(start_daemon: StartDaemon) -> Daemon:
    return await start_daemon('smtp_listen = "127.0.0.1:0"\n')


@pytest.fixture
async def impatient(start_daemon: StartDaemon) -> Daemon:
    """A listener that waits 0.2 s for each command, so a session ends after 2 s."""
    return await start_daemon('smtp_listen = "127.0.0.1:0"\nsmtp_timeout = 0.2\n')


async def pings(daemon: Daemon, check: Any) -> list[dict[str, Any]]:
    return [dict(p) for p in reversed(await daemon.store.pings(check.id))]


async def api_key(daemon: Daemon) -> dict[str, str]:
    key, _ = await daemon.store.create_api_key("", False, daemon.clock.now(), "cli")
    return {"X-Api-Key": key}


async def api_create(daemon: Daemon, **fields: Any) -> dict[str, Any]:
    headers = await api_key(daemon)
    body = json.dumps({"name": "backup", "timeout": 60, "grace": 10, **fields})
    response = await daemon.client.post("/api/v3/checks/", data=body, headers=headers)
    assert response.status == 201, await response.text()
    return dict(await response.json())


# -- who a mail pings ------------------------------------------------------------------------


async def test_mail_to_a_checks_uuid_is_a_success_ping_with_the_message_as_body(
    smtp_daemon: Daemon,
) -> None:
    check = await smtp_daemon.add(methods="POST")  # methods concerns HTTP, not e-mail
    assert await mail(smtp_daemon, [f"{check.uuid.upper()}@hc.example.net"]) == {}
    (ping,) = await pings(smtp_daemon, check)
    assert (ping["kind"], ping["scheme"], ping["method"]) == ("success", "email", "")
    assert ping["ua"] == f"Email from {SENDER}" and ping["remote_addr"] == "127.0.0.1"
    assert ping["body"] == message()
    assert (await smtp_daemon.store.get_check(check.uuid)).status == "up"


async def test_mail_to_ping_key_plus_slug_pings_that_check(smtp_daemon: Daemon) -> None:
    check = await smtp_daemon.add("nightly-db")
    key = await smtp_daemon.store.ping_key()
    assert await mail(smtp_daemon, [f"{key}+nightly-db@any.domain.example"]) == {}
    assert [p["kind"] for p in await pings(smtp_daemon, check)] == ["success"]


async def test_a_mail_to_several_checks_pings_each_and_unknown_ones_get_550(
    smtp_daemon: Daemon,
) -> None:
    first, second = await smtp_daemon.add("first"), await smtp_daemon.add("second")
    key = await smtp_daemon.store.ping_key()
    refused = await mail(
        smtp_daemon,
        [f"{first.uuid}@hc.example.net", f"{UNKNOWN_UUID}@hc.example.net",
         f"{key}+second@hc.example.net", f"{key}+nobody@x", "postmaster@hc.example.net",
         "wrong-key+second@hc.example.net"],
    )  # fmt: skip
    assert {address: code for address, (code, _) in refused.items()} == {
        f"{UNKNOWN_UUID}@hc.example.net": 550,
        f"{key}+nobody@x": 550,
        "postmaster@hc.example.net": 550,
        "wrong-key+second@hc.example.net": 550,
    }
    assert len(await pings(smtp_daemon, first)) == len(await pings(smtp_daemon, second)) == 1


async def test_a_mail_only_to_unknown_recipients_is_refused_and_stores_nothing(
    smtp_daemon: Daemon,
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await mail(smtp_daemon, [f"{UNKNOWN_UUID}@hc.example.net"])
    assert refused.value.recipients[f"{UNKNOWN_UUID}@hc.example.net"][0] == 550
    assert await smtp_daemon.query("SELECT count(*) FROM pings") == [(0,)]


# -- filters ---------------------------------------------------------------------------------


async def test_a_subject_failure_keyword_takes_the_check_down(smtp_daemon: Daemon) -> None:
    check = await api_create(smtp_daemon, filter_subject=True, failure_kw="FAIL, WARNING")
    await mail(smtp_daemon, [f"{check['uuid']}@hc.example.net"], message("[OK] Backup"))
    await mail(smtp_daemon, [f"{check['uuid']}@hc.example.net"], message("[WARNING] 2 files"))
    stored = await smtp_daemon.store.get_check(check["uuid"])
    assert [p["kind"] for p in await pings(smtp_daemon, stored)] == ["ign", "fail"]
    assert stored.status == "down"
    assert (await smtp_daemon.store.flips(stored.id))[0]["reason"] == "fail"


async def test_a_start_keyword_in_the_body_starts_a_run(smtp_daemon: Daemon) -> None:
    check = await api_create(smtp_daemon, filter_body=True, start_kw="Starting")
    html = (
        "MIME-Version: 1.0\r\nSubject: nightly\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\n(see the HTML part)\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n<p><b>Start</b>ing backup</p>\r\n--b--\r\n"
    )  # HTML is read as text, tags dropped: "Starting backup"
    await mail(smtp_daemon, [f"{check['uuid']}@hc.example.net"], html.encode())
    stored = await smtp_daemon.store.get_check(check["uuid"])
    assert [p["kind"] for p in await pings(smtp_daemon, stored)] == ["start"]
    assert stored.last_start is not None


async def test_a_mail_matching_no_keyword_is_ignored(smtp_daemon: Daemon) -> None:
    check = await api_create(
        smtp_daemon, filter_subject=True, filter_body=True, success_kw="SUCCESS", failure_kw="FAIL"
    )
    await mail(smtp_daemon, [f"{check['uuid']}@hc.example.net"], message("Report", "3 files"))
    stored = await smtp_daemon.store.get_check(check["uuid"])
    (ping,) = await pings(smtp_daemon, stored)
    assert ping["kind"] == "ign" and ping["notes"] == ["no keyword in the e-mail"]
    assert (stored.status, stored.last_ping) == ("new", None)


async def test_e_mail_filters_and_the_http_body_filter_each_judge_only_their_own_pings(
    smtp_daemon: Daemon,
) -> None:
    mailed = await api_create(smtp_daemon, filter_subject=True, failure_kw="FAIL")
    await smtp_daemon.client.post(f"/ping/{mailed['uuid']}", data=b"FAIL")  # HTTP: not judged
    posted = await api_create(smtp_daemon, filter_http_body=True, failure_kw="FAIL")
    await mail(smtp_daemon, [f"{posted['uuid']}@hc.example.net"], message("FAIL"))  # not judged
    for check in (mailed, posted):
        assert (await smtp_daemon.store.get_check(check["uuid"])).status == "up"


async def test_the_api_stores_and_returns_the_e_mail_filter_fields(smtp_daemon: Daemon) -> None:
    check = await api_create(
        smtp_daemon, filter_subject=True, filter_body=True, start_kw="Starting",
        success_kw="SUCCESS", failure_kw="FAIL", filter_default_fail=True,
    )  # fmt: skip
    headers = await api_key(smtp_daemon)
    response = await smtp_daemon.client.get(f"/api/v3/checks/{check['uuid']}", headers=headers)
    read = await response.json()
    fields = ("filter_subject", "filter_body", "filter_http_body", "filter_default_fail",
              "start_kw", "success_kw", "failure_kw", "subject", "subject_fail")  # fmt: skip
    assert [read[f] for f in fields] == [
        True, True, False, True, "Starting", "SUCCESS", "FAIL", "SUCCESS", "FAIL",
    ]  # fmt: skip
    legacy = await api_create(smtp_daemon, subject="Done", subject_fail="Broken")
    assert (legacy["filter_subject"], legacy["success_kw"], legacy["failure_kw"]) == (
        True, "Done", "Broken",
    )  # fmt: skip
    update = json.dumps({"subject": "", "subject_fail": ""})
    url = f"/api/v3/checks/{legacy['uuid']}"
    cleared = await (await smtp_daemon.client.post(url, data=update, headers=headers)).json()
    assert (cleared["filter_subject"], cleared["subject"], cleared["success_kw"]) == (False, "", "")


# -- what a client may send, and for how long ------------------------------------------------


def lines(data: bytes, fold: bytes) -> bytes:
    """`data` cut into lines SMTP carries (at most 998 bytes each)."""
    return fold.join(data[i : i + 900] for i in range(0, len(data), 900))


@pytest.mark.parametrize(
    "hostile",
    [
        b"Subject: " + lines(b"=?utf-8?q?a?= " * 28_000, b"\r\n ") + b"\r\n\r\nx",  # 17 s
        b"Content-Type: text/html\r\n\r\n" + lines(b"<!--" * 25_000, b"\r\n"),  # 3 s
        b"Content-Type: text/plain; " + lines(b"a=b; " * 100_000, b"\r\n ") + b"\r\n\r\nx",
        b"".join(b'Content-Type: multipart/mixed; boundary="%d"\r\n\r\n--%d\r\n' % (i, i)
                 for i in range(1500)),  # nested past the recursion limit
    ],
)  # fmt: skip
async def test_a_hostile_message_is_judged_in_bounded_time(
    smtp_daemon: Daemon, hostile: bytes
) -> None:
    check = await api_create(smtp_daemon, filter_subject=True, filter_body=True, success_kw="a")
    started = time.monotonic()
    await mail(smtp_daemon, [f"{check['uuid']}@hc.example.net"], hostile)
    # ~0.3 s alone; the stdlib's SMTP policy and html.parser: 17 s, 3 s, 1.2 s per 30 kB
    assert time.monotonic() - started < 3
    assert len(await smtp_daemon.query("SELECT kind FROM pings")) == 1


async def test_an_oversized_message_is_kept_cut_to_the_body_limit(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon('smtp_listen = "127.0.0.1:0"\nping_body_limit = 1000\n')
    check = await daemon.add()
    data = message(text=("x" * 98 + "\r\n") * 50)  # 5 kB
    assert await mail(daemon, [f"{check.uuid}@hc.example.net"], data) == {}
    (ping,) = await pings(daemon, check)
    assert (ping["body"], ping["body_size"]) == (data[:1000], len(data))


async def test_a_message_over_the_cap_is_refused_with_552(smtp_daemon: Daemon) -> None:
    check = await smtp_daemon.add()
    huge = message(text=("z" * 998 + "\r\n") * 1100)  # 1.1 MB, over max(100 kB, 1 MB)

    def send_without_announcing_its_size() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", smtp_daemon.app[LISTENER].port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail(SENDER)  # no SIZE=: the data itself must be cut off
            smtp.rcpt(f"{check.uuid}@hc.example.net")
            try:
                return smtp.data(huge)
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error

    code, _ = await asyncio.to_thread(send_without_announcing_its_size)
    assert code == 552 and await pings(smtp_daemon, check) == []


async def test_a_silent_client_is_dropped_after_the_timeout(impatient: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.app[LISTENER].port)
    assert (await reader.readline()).startswith(b"220 ")
    writer.write(b"EHLO slow.example.org\r\n")
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), timeout=10)  # b"" once the server hangs up
    assert rest.startswith(b"250-") and time.monotonic() - started < 5
    writer.close()


async def test_past_max_sessions_a_connection_gets_421_and_the_held_ones_keep_working(
    smtp_daemon: Daemon,
) -> None:
    """Each session is short, but a stranger could open them by the thousand: past
    MAX_SESSIONS a new one is told to come back later, and closing some lets mail in again."""
    port = smtp_daemon.app[LISTENER].port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(smtp.MAX_SESSIONS)]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"220 ")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await asyncio.wait_for(reader.read(), timeout=5)).startswith(b"421 ")
    writer.close()
    for _, held_writer in held[:5]:
        held_writer.close()
    check = await smtp_daemon.add()
    await eventually(lambda: len(smtp_daemon.app[LISTENER].sessions) < smtp.MAX_SESSIONS)
    assert await mail(smtp_daemon, [f"{check.uuid}@hc.example.net"]) == {}
    for _, held_writer in held[5:]:
        held_writer.close()


async def test_a_client_sending_commands_forever_is_dropped_at_the_session_deadline(
    impatient: Daemon,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.app[LISTENER].port)
    await reader.readline()
    started = time.monotonic()
    while not reader.at_eof() and time.monotonic() - started < 10:
        writer.write(b"NOOP\r\n")  # each resets the command timeout; the session ends at 2 s
        await reader.read(1000)
        await asyncio.sleep(0.02)
    assert reader.at_eof() and 1.5 < time.monotonic() - started < 6
    writer.close()


async def test_a_source_guessing_addresses_is_refused_even_known_ones(
    smtp_daemon: Daemon,
) -> None:
    check = await smtp_daemon.add()

    def guess_then_send() -> tuple[list[int], int]:
        port = smtp_daemon.app[LISTENER].port
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail(SENDER)
            codes = [smtp.rcpt(f"{i:08x}-0000-4000-8000-000000000000@x")[0] for i in range(100)]
            smtp.rset()
            smtp.mail(SENDER)
            return codes, smtp.rcpt(f"{check.uuid}@hc.example.net")[0]

    codes, known = await asyncio.to_thread(guess_then_send)
    assert codes == [550] * int(MISS_BURST) and known == 450
    response = await smtp_daemon.client.get(f"/ping/{check.uuid}")  # one bucket for both doors
    assert response.status == 429


# -- configuration and the real process ------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('smtp_listen = "2525"\n', "1: smtp_listen: expected HOST:PORT"),
        ("smtp_timeout = 0\n", "1: smtp_timeout: must be between"),
        ('[[check]]\nname = "a"\nperiod = "1h"\nfilter_subject = "yes"\n',
         "4: filter_subject: expected true or false"),
    ],
)  # fmt: skip
def test_config_mistakes_are_located(make_config: MakeConfig, toml: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(toml)
    assert error in str(raised.value)


async def test_heartbeatd_serve_takes_mail_and_logs_no_recipient(tmp_path: Path) -> None:
    smtp_port = free_port()
    process = Process(
        tmp_path,
        f'smtp_listen = "127.0.0.1:{smtp_port}"\n'
        '[[check]]\nname = "mailed"\nperiod = "1h"\nfilter_subject = true\nsuccess_kw = "OK"\n',
    )
    await process.start()
    try:
        ((uuid,),) = await asyncio.to_thread(read_db, process.db, "SELECT uuid FROM checks")
        to = [f"{uuid}@hc.example.net"]
        assert await asyncio.to_thread(send_mail, smtp_port, to, message("[OK] done")) == {}
    finally:
        assert await asyncio.to_thread(process.stop) == 0
    assert read_db(process.db, "SELECT kind, scheme FROM pings") == [("success", "email")]
    log = process.log.read_text()
    assert f"taking e-mailed pings on 127.0.0.1:{smtp_port}" in log
    assert uuid not in log and "Traceback" not in log
