"""Attacks on the login form, each shown closed.

- Hole 3, filling the disk through the login form: a 1 MB user name is refused before it is
  read whole, failed logins keep no name that is no user's, a guesser's failures make one
  audit row a minute, and audit rows, flips and sessions are pruned by their retention.
- Hole 4, guessing passwords: a source, or a name tried from many sources, gets 429 with
  Retry-After after 5 failures, before any hash; the user's own address still gets in. An
  unknown name costs the same hash as a real one, so timing does not tell them apart.
  Passwords are hashed at OWASP's scrypt cost (N=2^17) and older hashes are upgraded.
- A flood of wrong passwords against a real `heartbeatd serve` leaves pings as fast as before.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.harness import rss_mb
from heartbeatd.core import model
from heartbeatd.store.retention import PRUNE_EVERY
from heartbeatd.web.login_limit import FREE_FAILURES, NAME_MAX_WAIT, LoginThrottle
from heartbeatd.web.ui.auth import MAX_WAITING, SCRYPT_N, SESSION_LIFETIME, Passwords, hash_password
from tests.conftest import Daemon, Invoke, cheap_hash, eventually
from tests.test_crash import Daemon as Process
from tests.test_hostile import FLOOD, p99_ms, ping_latencies

PASSWORD = "correct horse battery"
BEHIND_PROXY = 'trusted_proxies = ["127.0.0.1"]\n'
DAY = 86400.0


class LoginForm:
    """The login form as a browser behind a proxy posts it, from any address we like."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.csrf: str | None = None

    async def post(self, user: str, password: str, source: str) -> tuple[int, dict[str, str]]:
        client = self.daemon.client
        if self.csrf is None:
            self.csrf = csrf_of(await (await client.get("/login")).text())
        response = await client.post(
            "/login", allow_redirects=False, headers={"X-Forwarded-For": source},
            data={"csrf": self.csrf, "user": user, "password": password},
        )  # fmt: skip
        body = await response.text()
        if response.status == 303:
            self.csrf = None  # the form's token is spent
        elif "heartbeatd_login" in response.cookies:
            self.csrf = csrf_of(body)
        return response.status, dict(response.headers)

    async def status(self, user: str, password: str, source: str) -> int:
        return (await self.post(user, password, source))[0]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match[1]


async def database_bytes(daemon: Daemon) -> int:
    """The database's size, write-ahead log included (its pages, however checkpointed)."""
    [(size,)] = await daemon.query(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    )
    return int(size)


async def failed_logins(daemon: Daemon) -> list[tuple[str, str, int]]:
    return [
        (row["actor"], row["target"], row["after"]["failures"])
        for row in reversed(await daemon.store.audit_log())
        if row["action"] == "login.fail"
    ]


@pytest.fixture
async def behind_proxy(start_daemon: Any) -> Daemon:
    daemon = await start_daemon(BEHIND_PROXY)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    return daemon


# -- hole 3: the disk ------------------------------------------------------------------------


async def test_megabyte_user_names_are_refused_and_leave_the_database_as_it_was(
    behind_proxy: Daemon,
) -> None:
    daemon, form = behind_proxy, LoginForm(behind_proxy)
    before = await database_bytes(daemon)
    huge = "x" * 10**6  # 1 MB (a larger body makes aiohttp's client warn)
    statuses = [await form.status(huge, "guess", f"10.0.1.{i}") for i in range(30)]
    assert statuses == [413] * 30
    longest = [await form.status(f"{i:03}" * 66, "guess", f"10.0.2.{i}") for i in range(30)]
    assert longest == [401] * 30  # names up to 200 characters are read, and not kept
    grown = await database_bytes(daemon) - before
    print(f"\n60 failed logins (30 with 1 MB names) grew the database by {grown} bytes")
    assert grown < 100_000


async def test_a_password_typed_as_the_name_is_not_kept_and_a_guesser_makes_one_row(
    behind_proxy: Daemon, hb: Invoke
) -> None:
    daemon, form = behind_proxy, LoginForm(behind_proxy)
    for _ in range(3):
        assert await form.status("Tr0ub4dor&3", "", "10.0.0.1") == 401
    assert await form.status("admin", "wrong", "10.0.0.1") == 401
    assert await form.status("admin", "wrong", "2001:db8:1:2::7") == 401
    assert await failed_logins(daemon) == [
        ("?", "10.0.0.1", 3), ("admin", "10.0.0.1", 1), ("admin", "2001:db8:1:2::/64", 1),
    ]  # fmt: skip
    audit = await asyncio.to_thread(hb, "audit")  # the CLI runs its own event loop
    assert " ? login.fail 10.0.0.1: 3 failures\n" in audit.output
    daemon.clock.advance(61)
    assert await form.status("admin", "wrong", "10.0.0.1") == 401
    assert (await failed_logins(daemon))[-1] == ("admin", "10.0.0.1", 1)  # a new minute
    rows = await daemon.query("SELECT actor, target, after FROM audit")
    assert "Tr0ub4dor" not in repr(rows)


async def test_audit_rows_are_cut_to_a_sane_length(behind_proxy: Daemon) -> None:
    await behind_proxy.store.record_audit(behind_proxy.clock.now(), "a" * 10_000, "x", "t" * 10_000)
    [(actor, target)] = await behind_proxy.query("SELECT length(actor), length(target) FROM audit")
    assert (actor, target) == (200, 200)


async def test_audit_rows_older_than_the_retention_are_pruned_by_the_clock(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon('audit_retention = "30d"\n')
    for _ in range(1000):
        await daemon.store.record_audit(daemon.clock.now(), "cli", "check.create", "old")
    daemon.clock.advance(20 * DAY)
    await daemon.store.record_audit(daemon.clock.now(), "cli", "check.create", "recent")
    daemon.clock.advance(PRUNE_EVERY)
    await asyncio.sleep(0.05)
    assert await daemon.query("SELECT count(*) FROM audit") == [(1001,)]  # none is 30 days old
    daemon.clock.advance(10 * DAY)

    async def only_recent_left() -> bool:
        return await daemon.query("SELECT target FROM audit") == [("recent",)]

    await eventually(only_recent_left)


async def test_old_flips_and_expired_sessions_are_pruned_but_each_checks_status_stays_known(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon('history_retention = "30d"\n')
    check = await daemon.add("job")
    for change in (model.pause, model.resume, model.pause):
        await daemon.store.change_state(check.uuid, change, daemon.clock.now())
        daemon.clock.advance(60)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    now = daemon.clock.now()
    await daemon.store.add_session("token hash", 1, "csrf", now, now + SESSION_LIFETIME)
    daemon.clock.advance(31 * DAY)
    await daemon.store.change_state(check.uuid, model.resume, daemon.clock.now())

    async def pruned() -> bool:
        flips = await daemon.query("SELECT reason FROM flips ORDER BY id")
        sessions = await daemon.query("SELECT count(*) FROM sessions")
        return flips == [("pause",), ("resume",)] and sessions == [(0,)]

    daemon.clock.advance(PRUNE_EVERY)
    await eventually(pruned)  # the pause in force at the cutoff stays: the status then is known


# -- hole 4: guessing ------------------------------------------------------------------------


async def test_a_source_gets_429_with_retry_after_after_5_failures(behind_proxy: Daemon) -> None:
    daemon, form = behind_proxy, LoginForm(behind_proxy)
    for i in range(FREE_FAILURES):
        assert await form.status(f"user{i}", "guess", "10.0.0.1") == 401
    status, headers = await form.post("admin", PASSWORD, "10.0.0.1")  # even the right one
    assert (status, headers["Retry-After"]) == (429, "1")
    assert len(await failed_logins(daemon)) == 1 and (await failed_logins(daemon))[0][2] == 5
    assert await form.status("admin", "guess", "10.0.0.2") == 401  # another source: its own
    daemon.clock.advance(1)
    assert await form.status("user9", "guess", "10.0.0.1") == 401
    status, headers = await form.post("user9", "guess", "10.0.0.1")
    assert (status, headers["Retry-After"]) == (429, "2")  # twice as long each time
    daemon.clock.advance(2)
    assert await form.status("admin", PASSWORD, "10.0.0.1") == 303  # clears the source's count
    assert [await form.status("x", "guess", "10.0.0.1") for _ in range(6)] == [401] * 5 + [429]


async def test_ipv6_sources_are_throttled_by_their_64(behind_proxy: Daemon) -> None:
    form = LoginForm(behind_proxy)
    for i in range(FREE_FAILURES):
        assert await form.status(f"user{i}", "guess", f"2001:db8:1:2::{i + 1:x}") == 401
    assert await form.status("user9", "guess", "2001:db8:1:2:ffff::1") == 429
    assert await form.status("user9", "guess", "2001:db8:1:3::1") == 401


async def test_a_name_tried_from_many_sources_gets_429_but_not_from_its_users_address(
    behind_proxy: Daemon,
) -> None:
    daemon, form = behind_proxy, LoginForm(behind_proxy)
    assert await form.status("admin", PASSWORD, "192.0.2.1") == 303  # the admin's own address
    for name in ("admin", "nobody"):  # a user or not: the same answers
        statuses = [await form.status(name, "guess", f"10.0.3.{i}") for i in range(6)]
        assert statuses == [401] * FREE_FAILURES + [429]
    waits = []
    for i in range(30):  # a patient attacker with many addresses
        status, headers = await form.post("admin", "guess", f"10.0.4.{i}")
        if status == 429:
            waits.append(int(headers["Retry-After"]))
            daemon.clock.advance(waits[-1])
    assert max(waits) <= NAME_MAX_WAIT  # a few minutes at most, however long it goes on
    assert await form.status("admin", "guess", "10.0.5.1") == 429
    assert await form.status("admin", PASSWORD, "192.0.2.1") == 303  # the admin still gets in


def test_the_throttle_keeps_a_bounded_number_of_keys_and_the_guessers_first() -> None:
    throttle = LoginThrottle(max_keys=100)
    for _ in range(FREE_FAILURES):
        throttle.attempt("10.0.0.1", "admin", 0.0)
    for i in range(10_000):  # a spray of one try each from many addresses, many names
        throttle.attempt(f"10.1.{i // 250}.{i % 250}", f"name{i}", 0.5)
    assert len(throttle._failures) <= 100
    assert throttle.wait("10.0.0.1", None, 0.5) == 0.5  # still held back
    assert throttle.wait("10.9.9.9", "admin", 0.5) == 0.5


async def test_logins_beyond_the_hashes_that_may_wait_are_refused_at_once(
    start_daemon: Any,
) -> None:
    cost = 2**14  # a hash that lasts long enough for all the tries to arrive meanwhile
    daemon = await start_daemon(BEHIND_PROXY, passwords=Passwords(cost))
    url = daemon.client.make_url("/login")
    forged = {"Cookie": "heartbeatd_login=forged"}  # the form's token, as a script sends it
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def guess(i: int) -> tuple[int, dict[str, str]]:
            form = {"csrf": "forged", "user": f"user{i}", "password": "guess"}
            headers = {**forged, "X-Forwarded-For": f"10.0.7.{i}"}
            async with session.post(url, data=form, headers=headers) as response:
                return response.status, dict(response.headers)

        statuses = await asyncio.gather(*(guess(i) for i in range(3 * MAX_WAITING)))
    assert sorted(status for status, _ in statuses) == [401] * MAX_WAITING + [429] * (
        2 * MAX_WAITING
    )
    assert {headers["Retry-After"] for status, headers in statuses if status == 429} == {"1"}


async def test_unknown_and_known_names_take_as_long(start_daemon: Any) -> None:
    cost = 2**12  # cheap, yet the hash outweighs the rest of a request many times
    daemon = await start_daemon(BEHIND_PROXY, passwords=Passwords(cost))
    await daemon.store.set_password("admin", hash_password(PASSWORD, cost), daemon.clock.now())
    form = LoginForm(daemon)
    took: dict[str, list[float]] = {"admin": [], "nobody": []}
    for i in range(6):
        for name in took:
            started = time.perf_counter()
            assert await form.status(name, "guess", f"10.0.6.{len(took[name])}{i}") == 401
            took[name].append(time.perf_counter() - started)
        daemon.clock.advance(NAME_MAX_WAIT)
    known, unknown = (statistics.median(took[name]) for name in took)
    print(f"\nat N=2^12: {1 / known:.0f} tries/s for a user's name, {1 / unknown:.0f}/s for none")
    assert 0.5 < unknown / known < 2


# -- the hash's cost ------------------------------------------------------------------------


async def test_new_hashes_cost_n_2_17_and_an_old_hash_is_upgraded_at_login(
    start_daemon: Any,
) -> None:
    assert SCRYPT_N >= 2**17 and Passwords().n == SCRYPT_N
    assert hash_password(PASSWORD).startswith("scrypt$131072$8$1$")
    daemon = await start_daemon(BEHIND_PROXY, passwords=Passwords())  # the production cost
    await daemon.store.set_password("admin", hash_password(PASSWORD, 2**14), daemon.clock.now())
    assert await LoginForm(daemon).status("admin", PASSWORD, "10.0.0.1") == 303
    [(stored,)] = await daemon.query("SELECT password FROM users")
    assert stored.startswith("scrypt$131072$8$1$")
    assert await daemon.query("SELECT count(*) FROM sessions") == [(1,)]  # not logged out
    assert await LoginForm(daemon).status("admin", PASSWORD, "10.0.0.1") == 303


# -- against the real daemon process --------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """The most memory the process has held at once (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def trickle_bodies(port: int, uuid: str, connections: int, source: str) -> None:
    """`connections` pings from `source` whose bodies come a byte every half second (a
    slowloris on bodies), each reopened when the daemon cuts it, until cancelled."""

    async def one() -> None:
        while True:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            head = (f"POST /ping/{uuid} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 100000\r\n\r\n")  # fmt: skip
            writer.write(head.encode())
            try:
                while not reader.at_eof():
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.5)
            except ConnectionError:
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))


async def test_pings_keep_their_p99_while_one_source_floods_login_and_another_trickles_bodies(
    served: tuple[Process, list[str]],
) -> None:
    process, uuids = served
    assert process.proc is not None
    before = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    rss_before = rss_mb(process.proc.pid)
    trickle = asyncio.create_task(trickle_bodies(process.port, uuids[1], 50, "127.0.0.4"))
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, process.base, "4", "login", stdout=asyncio.subprocess.PIPE
    )
    assert flood.stdout is not None
    assert await flood.stdout.readline() == b"flooding\n"
    under_flood = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    report = json.loads(await flood.stdout.readline())
    assert await flood.wait() == 0
    trickle.cancel()
    with pytest.raises(asyncio.CancelledError):  # not an error of its own: it trickled all along
        await trickle
    after = await ping_latencies(process.base, uuids[0], 500, "127.0.0.3")
    quiet = max(p99_ms(before), p99_ms(after))
    seen = {int(status): n for status, n in report["seen"].items()}
    peak = peak_rss_mb(process.proc.pid)
    print(f"\nlogin flood {seen} in {report['seconds']:.1f}s beside 50 trickled bodies; other "
          f"source's ping p99 {p99_ms(before):.1f} ms before, {p99_ms(under_flood):.1f} ms "
          f"during, {p99_ms(after):.1f} ms after; daemon RSS {rss_before:.0f} MB before, "
          f"{peak:.0f} MB at its peak")  # fmt: skip
    assert peak - rss_before < 1.5 * 128  # one 128 MiB hash at a time, not one per login
    assert set(seen) == {401, 429}
    assert seen[401] <= FREE_FAILURES + 3  # then 1 s, 2 s, 4 s apart: at most 3 more in 4 s
    assert p99_ms(under_flood) < max(2 * quiet, 20)  # 20 ms: this machine's noise
