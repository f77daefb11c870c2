"""Attacks on the login form, each shown closed.

- Hole 3, filling the disk: audit rows, flips, finished notifications and expired sessions
  are pruned by their retention, in the background, by the clock.
- Hole 4, telling names apart: an unknown name costs the same hash as a real one. Passwords
  are hashed at OWASP's scrypt cost (N=2^17) and older hashes are upgraded at login.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

from heartbeatd import model
from heartbeatd.auth import SCRYPT_N, SESSION_LIFETIME, Passwords, hash_password
from heartbeatd.retention import PRUNE_EVERY
from tests.conftest import Daemon, cheap_hash, eventually

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


# -- hole 3: the disk ------------------------------------------------------------------------


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
