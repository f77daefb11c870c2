"""Text no SQLite can store: a lone surrogate is a 4xx or stored with a replacement, never a 500.

aiohttp decodes bytes that are not UTF-8 (in the request line, the headers and multipart
fields) with surrogateescape, and JSON's "\\ud800" is a lone surrogate too; sqlite3 cannot
encode either. Sent here as raw bytes, over real HTTP, to each endpoint that stores client text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from heartbeatd.web.ping import storable
from tests.conftest import Daemon, cheap_hash
from tests.test_web import PASSWORD, PRIVATE, csrf_in, log_in

RAW = b"\xff\xed\xa0\x80("  # not UTF-8: one bad byte, then a UTF-8-encoded surrogate


async def raw(daemon: Daemon, request: bytes) -> tuple[int, bytes]:
    """Send `request` as it is (no client library re-encodes it); the status and the body."""
    server = daemon.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def form_post(path: str, fields: dict[str, bytes], cookie: str = "") -> bytes:
    """A multipart/form-data POST whose field values are raw bytes."""
    boundary = b"b0undary"
    parts = b"".join(
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode()
        + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in fields.items()
    ) + b"--" + boundary + b"--\r\n"  # fmt: skip
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        f"Content-Length: {len(parts)}\r\n\r\n"
    ).encode() + parts


def cookies(daemon: Daemon) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in daemon.client.session.cookie_jar)


def test_storable_replaces_what_utf8_cannot_hold_and_keeps_the_rest() -> None:
    assert storable("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert storable("a\ud800b\udcffc") == "a\ufffdb\ufffdc"


@pytest.fixture
async def pinged(daemon: Daemon) -> tuple[Daemon, str]:
    check = await daemon.add("job")
    return daemon, check.uuid


@pytest.mark.parametrize(
    "target",
    [
        "/api/push/{uuid}?msg=",  # Uptime Kuma's message
        "/cronitor/{uuid}/run?message=",  # Cronitor's message
        "/snitch/{uuid}?m=",  # Dead Man's Snitch's message
        "/ping/{uuid}?note=",  # an unknown parameter, kept as a note
    ],
)
async def test_ingress_messages_are_stored_with_replacements(pinged, target: str) -> None:
    daemon, uuid = pinged
    path = target.format(uuid=uuid).encode() + b"%FF%ED%A0%80("  # raw bytes here are a 400
    request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, body = await raw(daemon, request)
    assert status < 300, body
    assert len(await daemon.query("SELECT body, notes FROM pings")) == 1


@pytest.mark.parametrize("target", ["/cronitor/{uuid}/run", "/snitch/{uuid}"])
async def test_ingress_form_messages_are_stored_with_replacements(pinged, target: str) -> None:
    daemon, uuid = pinged
    form = b"m=" + RAW + b"&message=" + RAW
    request = (
        f"POST {target.format(uuid=uuid)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\n\r\n"
    ).encode() + form
    status, body = await raw(daemon, request)
    assert status < 300, body
    ((stored,),) = await daemon.query("SELECT body FROM pings")
    assert stored.decode() == "\ufffd" * 4 + "("


async def test_ping_headers_are_stored_with_replacements(pinged) -> None:
    daemon, uuid = pinged
    request = (
        f"GET /ping/{uuid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: ".encode()
        + RAW
        + b"\r\n\r\n"
    )
    assert (await raw(daemon, request))[0] == 200
    assert await daemon.query("SELECT ua FROM pings") == [("\ufffd" * 4 + "(",)]


async def test_a_check_form_that_is_not_utf8_is_refused_and_saves_nothing(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    fields = {"csrf": csrf.encode(), "name": b"db " + RAW, "slug": b"", "tags": b"prod",
              "desc": b"", "kind": b"simple", "period": b"1h", "grace": b"5m"}  # fmt: skip
    status, body = await raw(daemon, form_post("/checks/new", fields, cookies(daemon)))
    assert (status, body) == (400, b"the form is not valid UTF-8")
    assert await daemon.store.list_checks() == []


@pytest.mark.parametrize("field", ["csrf", "user", "password", "next"])
async def test_a_login_form_with_bad_bytes_is_refused_or_served(
    start_daemon: Any, field: str
) -> None:
    daemon = await start_daemon(PRIVATE)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    form = await (await daemon.client.get("/login")).text()
    fields = {"csrf": csrf_in(form).encode(), "user": b"admin", "password": PASSWORD.encode(),
              "next": b"/"}  # fmt: skip
    fields[field] = fields[field] + RAW
    status, body = await raw(daemon, form_post("/login", fields, cookies(daemon)))
    assert (status, body) == (400, b"the form is not valid UTF-8")


@pytest.mark.parametrize(
    "path, header",
    [
        ("/api/v3/checks/", b"X-Api-Key: "),
        ("/", b"Cookie: heartbeatd_session="),
        ("/metrics", b"Authorization: Bearer "),
    ],
)
async def test_a_secret_header_that_is_not_utf8_is_refused(
    start_daemon: Any, path: str, header: bytes
) -> None:
    daemon = await start_daemon(f'metrics_key = "{"k" * 32}"\n{PRIVATE}')
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    status, body = await raw(daemon, request + header + RAW + b"\r\n\r\n")
    assert 300 <= status < 500, body
