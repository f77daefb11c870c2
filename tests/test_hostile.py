"""Hostile and broken clients: none of them gets a 500 or a traceback, or slows real pings.

In-process (the app on a loopback port, ManualClock): the 404 rate limit's rules, malformed
HTTP, non-UTF-8 bytes everywhere, path traversal in every route. Against a real `heartbeatd
serve` process: slowloris, a 100 MB body (the daemon's RSS read from /proc) and a flood of 404
guesses from one loopback address while another pings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from benchmarks.harness import percentile, rss_mb
from heartbeatd.daemon.server import make_runner
from heartbeatd.store import CheckDefinition
from heartbeatd.web.app import create_app
from heartbeatd.web.keys import CLOCK, CONFIG, STORE
from heartbeatd.web.ratelimit import (
    MISS_BURST,
    MISS_LIMITER,
    MISS_RATE,
    REFUSAL_RATE,
    MissLimiter,
    limit_misses,
)
from tests.conftest import Daemon
from tests.test_crash import Daemon as Process

StartDaemon = Callable[..., Any]
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- the 404 rate limit ---------------------------------------------------------------------


async def get(daemon: Daemon, path: str, source: str) -> int:
    response = await daemon.client.get(path, headers={"X-Forwarded-For": source})
    await response.read()
    return response.status


@pytest.fixture
async def behind_proxy(start_daemon: StartDaemon) -> Daemon:
    """The daemon behind a reverse proxy on loopback, so X-Forwarded-For names the source."""
    return await start_daemon('trusted_proxies = ["127.0.0.1"]\n')


async def test_a_source_guessing_urls_gets_429_after_its_burst(behind_proxy: Daemon) -> None:
    daemon = behind_proxy
    misses = [await get(daemon, f"/ping/{UNKNOWN}", "10.0.0.1") for _ in range(int(MISS_BURST))]
    assert misses == [404] * int(MISS_BURST)
    response = await daemon.client.get("/ping/nope", headers={"X-Forwarded-For": "10.0.0.1"})
    assert (response.status, await response.text()) == (429, "rate limited")
    assert response.headers["Retry-After"] == "1"
    assert await get(daemon, "/no/such/page", "10.0.0.1") == 429  # every URL, not only pings


async def test_other_sources_and_correct_pings_are_not_limited(behind_proxy: Daemon) -> None:
    daemon = behind_proxy
    check = await daemon.add()
    for _ in range(int(MISS_BURST) + 50):
        await get(daemon, f"/ping/{UNKNOWN}", "10.0.0.1")
    assert await get(daemon, f"/ping/{UNKNOWN}", "10.0.0.2") == 404  # a typo elsewhere: 404
    for _ in range(500):  # a source that pings real URLs never spends anything
        assert await get(daemon, f"/ping/{check.uuid}", "10.0.0.3") == 200


async def test_a_limited_source_is_served_again_as_its_bucket_refills(
    behind_proxy: Daemon,
) -> None:
    daemon = behind_proxy
    check = await daemon.add()
    for _ in range(int(MISS_BURST)):
        await get(daemon, f"/ping/{UNKNOWN}", "10.0.0.1")
    assert await get(daemon, f"/ping/{check.uuid}", "10.0.0.1") == 429  # not looked up at all
    daemon.clock.advance(1.01 / MISS_RATE)
    assert await get(daemon, f"/ping/{check.uuid}", "10.0.0.1") == 200
    daemon.clock.advance(1.0)
    statuses = [await get(daemon, f"/ping/{UNKNOWN}", "10.0.0.1") for _ in range(25)]
    assert statuses == [404] * 21 + [429] * 4  # the token left over and 20 a second, no more


async def test_a_guessing_source_cannot_overdraw_its_bucket_with_concurrent_requests(
    make_config: Any, clock: Any, aiohttp_client: Any
) -> None:
    """Once a source is plainly guessing, its requests are looked up one at a time: ten at
    once on its last token get one 404 between them, not ten."""

    async def slow_miss(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)  # a lookup long enough for the ten to overlap
        raise web.HTTPNotFound()

    app = web.Application(middlewares=[limit_misses])
    app[CONFIG], app[CLOCK], app[MISS_LIMITER] = make_config(), clock, MissLimiter()
    app.router.add_get("/ping/{token}", slow_miss)
    client = await aiohttp_client(app)
    for _ in range(int(MISS_BURST) - 1):
        app[MISS_LIMITER].charge("127.0.0.1", clock.monotonic())

    async def guess(i: int) -> int:
        async with client.get(f"/ping/{i}") as response:
            return int(response.status)

    statuses = await asyncio.gather(*(guess(i) for i in range(10)))
    assert sorted(statuses) == [404] + [429] * 9


async def test_an_untrusted_peer_cannot_spread_its_misses_over_forged_addresses(
    daemon: Daemon,
) -> None:
    statuses = [
        await get(daemon, f"/ping/{UNKNOWN}", f"10.0.{i // 250}.{i % 250}")
        for i in range(int(MISS_BURST) + 1)
    ]
    assert statuses[-1] == 429  # X-Forwarded-For is not believed: all from 127.0.0.1


async def test_ipv6_sources_are_limited_by_their_64(behind_proxy: Daemon) -> None:
    daemon = behind_proxy
    for i in range(int(MISS_BURST)):
        await get(daemon, f"/ping/{UNKNOWN}", f"2001:db8:1:2::{i:x}")
    assert await get(daemon, f"/ping/{UNKNOWN}", "2001:db8:1:2:ffff::1") == 429
    assert await get(daemon, f"/ping/{UNKNOWN}", "2001:db8:1:3::1") == 404


# -- malformed HTTP, non-UTF-8, path traversal ------------------------------------------------


async def raw(port: int, request: bytes) -> int | None:
    """Send bytes as they are; the status the server answers, None if it just closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(65536), timeout=2)
        except TimeoutError:  # the server waits for the rest: hang up, as a client does
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(65536), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(found.group(1)) if found else None


def malformed(uuid: str) -> list[bytes]:
    ping = f"/ping/{uuid}".encode()
    host = b"Host: x\r\n"
    return [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",  # a header without a colon
        b"GET / HTTP/1.1\r\n" + host + b"X: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        b"GET /ping/\x00\x01 HTTP/1.1\r\n" + host + b"\r\n",
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Content-Length: -1\r\n\r\n",
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Content-Length: 1x\r\n\r\n",
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # request smuggling
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\nhello\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello",  # the body ends mid-chunk
        b"POST " + ping + b" HTTP/1.1\r\n" + host + b"Content-Length: 100\r\n\r\nshort",
        b"GET " + ping + b" HTTP/1.1\r\n" + host + b"Content-Encoding: gzip\r\n"
        b"Content-Length: 4\r\n\r\nnope",  # a body that does not inflate
    ]


TRAVERSALS = [
    "..",
    "../../../../etc/passwd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fheartbeatd.db",
    "..%5c..%5c..%5cheartbeatd.db",
    "....//....//etc/passwd",
    "%252e%252e%252fetc%252fpasswd",
    "..%00/etc/passwd",
    "/etc/passwd",
]


def traversal_urls(daemon: Daemon) -> list[str]:
    """Every route of the app with each traversal in each of its variable parts."""
    urls = []
    for resource in daemon.app.router.resources():
        template = resource.canonical
        for attack in TRAVERSALS:
            urls.append(re.sub(r"\{[^}]*\}", attack, template) if "{" in template else "")
            urls.append(f"{template.rstrip('/')}/{attack}")
    return sorted({u for u in urls if u})


async def test_path_traversal_in_every_route_never_reaches_a_file(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    await daemon.add()
    secret = Path("/etc/passwd").read_bytes()[:32]
    urls = traversal_urls(daemon)
    assert len(urls) > 50
    base = str(daemon.client.make_url("/")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        for url in urls:
            for method in ("GET", "POST"):
                async with session.request(method, URL(base + url, encoded=True)) as response:
                    body = await response.read()
                assert response.status < 500, (method, url, response.status)
                assert b"SQLite format 3" not in body and secret not in body, (method, url)
                if response.status == 200:  # a real page may answer; never a file's bytes
                    assert response.content_type in ("text/html", "text/plain", "application/json")
    assert no_tracebacks(caplog) == []


# -- against the real daemon process --------------------------------------------------------


def session_from(source: str) -> aiohttp.ClientSession:
    """A client whose connections come from `source`: any 127.x address is loopback."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=50)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10))


async def ping_latencies(base: str, uuid: str, count: int, source: str) -> list[float]:
    took = []
    async with session_from(source) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.get(f"{base}/ping/{uuid}") as response:
                assert response.status == 200
                await response.read()
            took.append(time.perf_counter() - started)
    return took


def p99_ms(latencies: list[float]) -> float:
    return percentile(latencies, 99) * 1000


async def test_malformed_http_gets_4xx_and_leaves_no_traceback(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    for request in malformed(uuids[0]):
        status = await raw(process.port, request)
        assert status is None or 400 <= status < 500, (request[:80], status)
    assert await ping_latencies(process.base, uuids[0], 1, "127.0.0.1")  # still serving
    # (the fixture asserts that the daemon's log holds no traceback and no ERROR line)


async def test_non_utf8_bytes_anywhere_get_4xx_or_are_stored_never_500(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    ping = f"/ping/{uuids[0]}".encode()
    requests = [
        b"GET /ping/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + ping + b"/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + ping + b"?rid=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xc3\x28 HTTP/1.1\r\nHost: \xff\r\n\r\n",
        b"GET /%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + ping + b"?\xff=\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for request in requests:
        status = await raw(process.port, request)
        assert status is None or 400 <= status < 500, (request, status)
    valid = [  # the ping is fine; only its text is not UTF-8: answered and stored
        b"GET " + ping + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe\xc3\x28\r\n\r\n",
        b"GET " + ping + b"?%FF=%FE HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST " + ping + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\xc3",
    ]
    for request in valid:
        assert await raw(process.port, request) == 200, request
    with sqlite3.connect(process.db) as conn:
        uas = {ua for (ua,) in conn.execute("SELECT ua FROM pings")}
        bodies = {
            bytes(b) for (b,) in conn.execute("SELECT body FROM pings WHERE body IS NOT NULL")
        }
    assert "\ufffd\ufffd\ufffd(" in uas or "???(" in uas
    assert b"\xff\xfe\x00\xc3" in bodies  # a body is bytes: kept exactly
    async with session_from("127.0.0.1") as session:
        for path in ["/", f"/checks/{uuids[0]}", f"/ping/{uuids[0]}%FF", "/?q=%FF"]:
            async with session.get(URL(process.base + path, encoded=True)) as response:
                assert response.status < 500, path


async def test_slowloris_connections_do_not_slow_real_pings(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    baseline = await ping_latencies(process.base, uuids[0], 200, "127.0.0.1")

    async def slow_client(i: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", process.port)
        head = f"POST /ping/{uuids[1]} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        try:
            for byte in (head if i % 2 else head + "\r\n" + "x" * 100).encode():
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except ConnectionError:
            pass
        finally:
            writer.close()

    attackers = [asyncio.create_task(slow_client(i)) for i in range(200)]
    await asyncio.sleep(0.5)  # every connection is open and dribbling
    under_attack = await ping_latencies(process.base, uuids[0], 200, "127.0.0.1")
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    print(f"\nping p99 {p99_ms(baseline):.1f} ms alone, {p99_ms(under_attack):.1f} ms "
          f"beside 200 slowloris connections")  # fmt: skip
    assert p99_ms(under_attack) < max(2 * p99_ms(baseline), 50)


async def test_a_100_mb_body_is_truncated_without_being_held_in_memory(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    assert process.proc is not None
    size = 100 * 2**20
    chunk = bytes(range(256)) * 4096  # 1 MiB, generated once and sent 100 times

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    before = rss_mb(process.proc.pid)
    url = f"{process.base}/ping/{uuids[2]}"
    async with session_from("127.0.0.1") as session, session.post(url, data=body()) as response:
        assert (response.status, await response.text()) == (200, "OK")
        limit = int(response.headers["Ping-Body-Limit"])
    after = rss_mb(process.proc.pid)
    print(f"\ndaemon RSS {before:.1f} MB before a 100 MB body, {after:.1f} MB after")
    assert after - before < 20
    with sqlite3.connect(process.db) as conn:
        stored, sent = conn.execute(
            "SELECT body, body_size FROM pings WHERE body_size > 0"
        ).fetchone()
    assert (len(stored), sent) == (limit, size)
    assert bytes(stored) == (chunk * 2)[:limit]


FLOOD = """
import asyncio, json, sys, time
import aiohttp

def guess(base, worker, n):
    return "GET", f"{base}/ping/{worker:08x}-0000-4000-8000-{n:012x}", None

def wrong_password(base, worker, n):
    form = {"csrf": "forged", "user": "admin", "password": f"guess{worker}-{n}"}
    return "POST", f"{base}/login", form

async def main(base, seconds, kind):
    request = {"guess": guess, "login": wrong_password}[kind]
    seen = {}
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=32)
    jar = aiohttp.DummyCookieJar()
    headers = {"Cookie": "heartbeatd_login=forged"}  # the login form's token is ours to pick
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar, headers=headers) as s:
        async def flood(worker):
            n = 0
            while time.monotonic() < until:
                n += 1
                method, url, form = request(base, worker, n)
                async with s.request(method, url, data=form) as response:
                    await response.read()
                    seen[response.status] = seen.get(response.status, 0) + 1
                    if sum(seen.values()) == 1:
                        print("flooding", flush=True)
        until = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(flood(w) for w in range(32)))
    print(json.dumps({"seen": seen, "seconds": time.monotonic() - started}), flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
"""


async def test_a_flood_of_404_guesses_is_limited_and_real_pings_go_on(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    # 500 pings a window: the p99 is then the 5th-slowest, not one scheduler hiccup on 2 cores.
    before = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, process.base, "4", "guess", stdout=asyncio.subprocess.PIPE
    )
    assert flood.stdout is not None
    assert await flood.stdout.readline() == b"flooding\n"
    cpu_before = cpu_seconds(process)
    under_flood = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    cpu = cpu_seconds(process) - cpu_before
    assert await get_status(process.base, f"/ping/{UNKNOWN}", "127.0.0.3") == 404  # a typo
    report = json.loads(await flood.stdout.readline())
    assert await flood.wait() == 0
    after = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    # Quiet is the slower of the windows either side, so a load that the machine's other work
    # puts on one window does not pass for the flood's doing, nor hide it.
    quiet = max(p99_ms(before), p99_ms(after))
    seen = {int(status): n for status, n in report["seen"].items()}
    total, took = sum(seen.values()), report["seconds"]
    print(f"\n{total} guesses in {took:.1f}s ({total / took:.0f}/s): {seen}; "
          f"other source's ping p99 {p99_ms(before):.1f} ms before, "
          f"{p99_ms(under_flood):.1f} ms during, {p99_ms(after):.1f} ms after; "
          f"daemon CPU {cpu:.2f}s in {sum(under_flood):.2f}s")  # fmt: skip
    assert set(seen) == {404, 429}
    # The flood's first 32 requests are looked up at once; once it is plainly guessing, its
    # requests take turns, so it gets its burst and then MISS_RATE 404s a second, no more.
    assert seen[404] <= MISS_BURST + MISS_RATE * took + 32
    # Refusals go out one at a time, REFUSAL_RATE a second, however many connections wait
    # for them: the flood is slowed to that pace instead of spinning.
    assert REFUSAL_RATE * (took - 1) / 2 <= seen[429] <= 1.1 * REFUSAL_RATE * took + 32
    assert p99_ms(under_flood) < max(2 * quiet, 20)  # 20 ms: this machine's noise
    # Once the flood stops, the source is let in again as its bucket refills.
    deadline = time.monotonic() + (MISS_BURST + 2) / MISS_RATE
    while (status := await get_status(process.base, f"/ping/{uuids[1]}", "127.0.0.2")) != 200:
        assert status == 429 and time.monotonic() < deadline
        await asyncio.sleep(0.25)


def cpu_seconds(process: Process) -> float:
    assert process.proc is not None
    fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def get_status(base: str, path: str, source: str) -> int:
    async with session_from(source) as session, session.get(base + path) as response:
        await response.read()
        return response.status


# -- the header timeout ---------------------------------------------------------------------

HEADER_LIMIT = 0.5


@pytest.fixture
async def strict(make_config: Any, clock: Any) -> AsyncIterator[tuple[int, str, Any]]:
    """The app served by `make_runner` as `serve` runs it, with a short header timeout."""
    app = create_app(make_config(), clock)
    runner = make_runner(app, header_timeout=HEADER_LIMIT)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    definition = CheckDefinition(name="job", slug="job", period=60.0, grace=10.0)
    check = await app[STORE].add_check(definition, clock.now())
    yield runner.addresses[0][1], check.uuid, app[STORE]
    await runner.cleanup()


async def dribble(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:
        pass


async def test_a_connection_that_never_finishes_its_headers_is_closed(strict) -> None:
    port, uuid, _ = strict
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /ping/{uuid} HTTP/1.1\r\nHost: x\r\nUser-Agent: {'s' * 100}\r\n".encode()
    started = time.monotonic()
    sending = asyncio.create_task(dribble(writer, head, 0.05))  # 6 s of headers at this pace
    assert await asyncio.wait_for(reader.read(), timeout=HEADER_LIMIT + 2) == b""  # closed
    took = time.monotonic() - started
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    writer.close()
    assert HEADER_LIMIT * 0.9 <= took < HEADER_LIMIT + 1, took


async def test_a_body_that_trickles_in_longer_than_the_header_timeout_is_kept(strict) -> None:
    port, uuid, store = strict
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"slow output"
    writer.write(
        f"POST /ping/{uuid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    await dribble(writer, body, 3 * HEADER_LIMIT / len(body))
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    check = await store.check_by_uuid(uuid)
    (ping,) = await store.pings(check.id)
    assert await store.ping_body(check.id, ping["n"]) == body
