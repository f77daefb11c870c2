"""Slow and unwanted request bodies, sent with raw sockets to a real `heartbeatd serve`.

Holes proved closed (the security issue "Safe to put on the internet"):
- 6, slow bodies hold connections forever: a body sent at a byte a second to a ping, /login,
  the API or /snitch is answered 408 and its connection closed once it falls behind the pace
  of bodies.py (test_a_trickled_body_is_cut_on_every_route_that_reads_one), while an honest
  100 kB body on a slow link still gets "OK" and is stored
  (test_a_100_kb_body_at_a_slow_mobile_pace_is_stored);
- a ping to an unknown token (any URL form) gets its 404 before its body is read, and the 404
  is still charged to the rate limit (test_an_unknown_token_is_answered_404_before_its_1_mb_body,
  test_early_404s_still_spend_the_sources_404_budget); the unread body is drained, never taken
  for the next request, and slug pings still create checks (compatibility:
  test_slug_pings_still_create_and_an_unread_body_is_never_taken_for_a_request);
- point 10, up to 1 MB of JSON parsed before the API key is checked: a wrong X-Api-Key is
  answered 401 before the body is read, and a body that carries its own key is read only so
  far (test_the_api_refuses_a_wrong_key_before_reading_the_body).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from benchmarks.harness import seed
from heartbeatd.daemon.server import LINGER
from heartbeatd.store import Store
from heartbeatd.web.api.handlers import KEYLESS_BODY
from heartbeatd.web.bodies import GRACE, MIN_RATE, TOTAL, deadline
from heartbeatd.web.ratelimit import MISS_BURST, MISS_RATE
from tests.test_crash import Daemon as Process

UNKNOWN = "00000000-0000-4000-8000-000000000000"
SLACK = 2.0  # scheduling on a shared 2-core machine
DECLARED = 1_000_000
SOURCE = ("127.0.0.9", 0)


@dataclass
class Served:
    process: Process
    uuids: list[str]
    key: str


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    process = Process(tmp_path)
    uuids = await asyncio.to_thread(seed, process.db, 3, 3600.0, 3600.0)
    async with Store(process.db) as store:
        key, _ = await store.create_api_key("test", False, time.time(), "test")
    await process.start()
    yield Served(process, uuids, key)
    assert await asyncio.to_thread(process.stop) == 0
    log = process.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log


@dataclass
class Outcome:
    status: int | None  # None: closed without an answer
    answered: float  # seconds from the end of the headers to the answer (or the close)
    closed: float  # ... to the close
    answer: bytes


def head(method: str, path: str, length: int, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", f"Content-Length: {length}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send(port: int, request: bytes, body: bytes, pause: float, wait: float) -> Outcome:
    """Send `request` at once, then `body` one byte every `pause` seconds (0: all at once),
    and time the answer and the close, waiting `wait` seconds at most."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    started = time.monotonic()
    sending = asyncio.create_task(dribble(writer, body, pause))
    answer, answered = b"", None
    try:
        async with asyncio.timeout(wait):
            while chunk := await read_or_reset(reader):
                answer += chunk
                answered = answered or time.monotonic() - started
    except TimeoutError:
        pytest.fail(f"still open after {wait:.0f} s; answered {answer[:40]!r}")
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    closed = time.monotonic() - started
    found = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return Outcome(int(found.group(1)) if found else None, answered or closed, closed, answer)


async def dribble(writer: asyncio.StreamWriter, body: bytes, pause: float) -> None:
    if not pause:
        writer.write(body)
        return
    for byte in body:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        await asyncio.sleep(pause)


async def read_or_reset(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except ConnectionResetError:
        return b""


async def login_cookie(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/login") as response:
        assert response.status == 200
        return f"heartbeatd_login={response.cookies['heartbeatd_login'].value}"


def test_the_pace_lets_slow_links_in_and_cuts_a_trickle_after_its_grace() -> None:
    # A 100 kB ping body at 2 kB/s (16 kbit/s, below GPRS) is never behind: at every moment
    # it has sent enough to be given longer than it has taken.
    assert all(deadline(0, 2000 * t) > t for t in range(1, 51))
    # A byte a second is cut at GRACE, give or take its few bytes' allowance.
    assert deadline(0, 10) == pytest.approx(GRACE + 10 / MIN_RATE)
    # However fast it comes, no body is read for longer than TOTAL.
    assert deadline(0, 10**9) == TOTAL


async def test_a_trickled_body_is_cut_on_every_route_that_reads_one(served: Served) -> None:
    port, known = served.process.port, served.uuids[0]
    cookie = await login_cookie(served.process.base)
    form = "application/x-www-form-urlencoded"
    slow = {  # path: (request, the answer it gets)
        "/ping/<uuid>": (head("POST", f"/ping/{known}", 1000), 408),
        "/snitch/<uuid>": (head("POST", f"/snitch/{known}", 1000, f"Content-Type: {form}"), 408),
        "/login": (head("POST", "/login", 1000, f"Content-Type: {form}", f"Cookie: {cookie}"), 408),
        "/api/v3/checks/": (head("POST", "/api/v3/checks/", 1000), 408),  # its key in the body
        "/ping/<unknown>": (head("POST", f"/ping/{UNKNOWN}", 1000), 404),
        "/snitch/<unknown>": (head("POST", f"/snitch/{UNKNOWN}", 1000), 404),
    }
    wait = GRACE + LINGER + 3 * SLACK
    outcomes = await asyncio.gather(
        *(send(port, request, b"x" * 1000, 1.0, wait) for request, _ in slow.values())
    )
    report = {path: o for path, o in zip(slow, outcomes, strict=True)}
    print("\n" + "\n".join(f"{path}: {o.status} after {o.answered:.1f} s, closed after "
                           f"{o.closed:.1f} s" for path, o in report.items()))  # fmt: skip
    for path, (_, status) in slow.items():
        outcome = report[path]
        assert outcome.status == status, (path, outcome.answer)
        if status == 408:  # read at a byte a second until the pace ran out, then closed
            assert GRACE * 0.9 <= outcome.answered <= deadline(0, 20) + SLACK, (path, outcome)
            assert b"Connection: close" in outcome.answer, (path, outcome.answer)
        else:  # answered before the body is read; the rest drained for LINGER, then closed
            assert outcome.answered < SLACK, (path, outcome)
        assert outcome.closed <= outcome.answered + LINGER + SLACK, (path, outcome)


async def test_a_100_kb_body_at_a_slow_mobile_pace_is_stored(served: Served) -> None:
    port, uuid = served.process.port, served.uuids[1]
    body = bytes(range(256)) * 400  # 102,400 bytes
    # 1 kB every 0.12 s: 8.5 kB/s (68 kbit/s, EDGE), 12 s in all: longer than GRACE.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("POST", f"/ping/{uuid}", len(body), "Connection: close"))
    started = time.monotonic()
    for at in range(0, len(body), 1024):
        writer.write(body[at : at + 1024])
        await writer.drain()
        await asyncio.sleep(0.12)
    answer = await asyncio.wait_for(reader.read(), timeout=SLACK)
    took = time.monotonic() - started
    writer.close()
    print(f"\n100 kB sent over {took:.1f} s: {answer.splitlines()[0].decode()}")
    assert took > GRACE
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK"), answer
    async with Store(served.process.db) as store:
        check = await store.check_by_uuid(uuid)
        (ping,) = await store.pings(check.id)
        assert ping["body_size"] == len(body)
        assert await store.ping_body(check.id, ping["n"]) == body[:100_000]


async def test_an_unknown_token_is_answered_404_before_its_1_mb_body(served: Served) -> None:
    port = served.process.port
    ping_key = "not-the-ping-key"
    paths = [
        f"/ping/{UNKNOWN}", f"/ping/{UNKNOWN}/fail", f"/ping/{ping_key}/job-0",
        f"/ping/{ping_key}/new-job?create=1", f"/snitch/{UNKNOWN}", f"/cronitor/{UNKNOWN}",
        f"/cronitor/{UNKNOWN}/run", f"/cronitor/p/{ping_key}/job-0", f"/api/push/{UNKNOWN}",
    ]  # fmt: skip
    # Only the headers are sent, declaring 1 MB: the answer cannot wait for the body.
    outcomes = await asyncio.gather(
        *(send(port, head("POST", path, DECLARED), b"", 0, LINGER + 2 * SLACK) for path in paths)
    )
    print("\n" + "\n".join(f"{path}: {o.status} after {o.answered * 1000:.0f} ms"
                           for path, o in zip(paths, outcomes, strict=True)))  # fmt: skip
    for path, outcome in zip(paths, outcomes, strict=True):
        assert (path, outcome.status) == (path, 404)
        assert outcome.answered < 1.0, (path, outcome)
        assert outcome.closed <= outcome.answered + LINGER + SLACK, (path, outcome)


async def test_slug_pings_still_create_and_an_unread_body_is_never_taken_for_a_request(
    served: Served,
) -> None:
    """Beside the test above (compatibility): a slug ping with ?create=1 and a body still
    creates its check; the body left unread by an early 404 is drained, not parsed as the
    connection's next request, even when it is one."""
    port, base, uuid = served.process.port, served.process.base, served.uuids[2]
    async with Store(served.process.db) as store:
        ping_key = await store.ping_key()
    async with aiohttp.ClientSession() as session:
        url = f"{base}/ping/{ping_key}/made-by-ping?create=1"
        async with session.post(url, data=b"output") as response:
            assert (response.status, await response.text()) == (201, "Created")
    smuggled = head("POST", f"/ping/{uuid}/fail", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("POST", f"/ping/{UNKNOWN}", len(smuggled)) + smuggled)
    writer.write(head("POST", f"/ping/{uuid}", 2, "Connection: close") + b"ok")
    answers = await asyncio.wait_for(reader.read(), timeout=SLACK)
    writer.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3})", answers) == [b"404", b"200"]
    async with Store(served.process.db) as store:
        check = await store.check_by_uuid(uuid)
        assert [p["kind"] for p in await store.pings(check.id)] == ["success"]


async def test_early_404s_still_spend_the_sources_404_budget(served: Served) -> None:
    port = served.process.port
    request = head("POST", f"/ping/{UNKNOWN}", DECLARED, "Connection: close")
    misses, started = 0, time.monotonic()
    while misses <= 3 * MISS_BURST:  # a source of its own: the start-up probe was 127.0.0.1
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=SOURCE)
        writer.write(request + b"x" * 100)
        first = await asyncio.wait_for(reader.read(12), timeout=SLACK)
        writer.close()
        if first != b"HTTP/1.1 404":
            break
        misses += 1
    took = time.monotonic() - started
    print(f"\n{misses} early 404s in {took:.2f} s, then {first!r}")
    assert first == b"HTTP/1.1 429"
    assert MISS_BURST <= misses <= MISS_BURST + MISS_RATE * took + 1


async def test_the_api_refuses_a_wrong_key_before_reading_the_body(served: Served) -> None:
    port, key = served.process.port, served.key
    wrong = "hcw_" + "x" * 28
    path = "/api/v3/checks/"
    refused = await send(
        port, head("POST", path, DECLARED, f"X-Api-Key: {wrong}"), b"", 0, LINGER + 2 * SLACK
    )
    print(f"\nwrong key, 1 MB declared: {refused.status} after {refused.answered * 1000:.0f} ms")
    assert refused.status == 401 and b"wrong api key" in refused.answer
    assert refused.answered < 1.0
    # A body that carries its own key is read before the key is checked, so only so far.
    big = b'{"name": "x"' + b" " * KEYLESS_BODY + b"}"  # valid JSON, past the keyless limit
    too_big = await send(port, head("POST", path, len(big), "Connection: close"), big, 0, 2 * SLACK)
    assert too_big.status == 413 and b"X-Api-Key" in too_big.answer
    # With the key in the header, the same body is read and the check made.
    made = await send(
        port, head("POST", path, len(big), f"X-Api-Key: {key}", "Connection: close"), big, 0,
        2 * SLACK,
    )  # fmt: skip
    assert made.status == 201, made.answer
