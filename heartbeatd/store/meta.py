"""The meta table and the database's health: the ping key, instance secrets,
start/alive/downtime marks, health probes, retention pruning, and backup facts."""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass

from heartbeatd.core.errors import Unavailable
from heartbeatd.store.base import (
    PRUNABLE,
    StoreBase,
    _same_key,
    _set_meta,
)

PROBE_EVERY = 1.0  # seconds: how stale status/ may trust the last commit to be (healthy)


class Meta(StoreBase):
    """Store's meta methods (composed in store/__init__.py)."""

    async def ping_key(self) -> str:
        async with self._reader.execute("SELECT value FROM meta WHERE key = 'ping_key'") as cur:
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def is_ping_key(self, given: str) -> bool:
        """Whether `given` is the ping key, compared in constant time: for doors that take the
        key alone (a Sentry DSN), to refuse a stranger before reading what he sends."""
        return _same_key(await self.ping_key(), given)

    async def rotate_ping_key(self) -> str:
        key = secrets.token_urlsafe(16)
        await self._write(
            lambda conn: conn.execute("UPDATE meta SET value = ? WHERE key = 'ping_key'", (key,))
        )
        return key

    async def badge_secret(self) -> str:
        """The instance's badge secret: every badge URL is derived from it (badges.py), and it
        appears in none. Making it deletes the `badge_key` of earlier versions, which sat in
        group badge URLs, published in READMEs, and opened every check's badge."""
        return await self.instance_secret("badge_secret", replaces="badge_key")

    async def instance_secret(self, key: str, replaces: str | None = None) -> str:
        """A random secret of this instance, named `key` in meta: made on first use (deleting
        the row `replaces`, a secret it takes over from), read without the writer after that,
        as every request that needs one reads it."""
        async with self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        if row is not None:
            return str(row[0])

        def run(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                (key, secrets.token_urlsafe(32)),
            )
            if replaces is not None:
                conn.execute("DELETE FROM meta WHERE key = ?", (replaces,))
            return str(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

        return await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def prune(self, table: str, cutoff: float, after: int, batch: int) -> int | None:
        """Delete the rows of `table` older than `cutoff` among the `batch` rows after rowid
        `after` (see PRUNABLE); the rowid to go on from, or None once past the cutoff.

        A bounded scan per call, queued as background work: pruning a million rows never
        holds the writer for more than one small batch, and pings go first."""
        column, condition = PRUNABLE[table]

        def run(conn: sqlite3.Connection) -> int | None:
            last, oldest = conn.execute(
                f"SELECT max(rowid), min({column}) FROM (SELECT rowid, {column} FROM {table} "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?)",
                (after, batch),
            ).fetchone()
            if last is None:
                return None
            conn.execute(
                f"DELETE FROM {table} WHERE rowid > :after AND rowid <= :last "
                f"AND {column} < :cutoff {condition}",
                {"after": after, "last": last, "cutoff": cutoff},
            )
            return last if oldest < cutoff else None

        return await self._writer.run(run, background=True)  # no check changes

    async def healthy(self, now: float) -> None:
        """Raise Unavailable, saying why, unless the database answers a query and takes writes
        (the API's status/, for load balancers and uptime monitors).

        A query alone said 200 while every ping got 503 (disk full, read-only). So unless a
        batch committed within PROBE_EVERY, a write is tried: the heartbeat selfmon writes
        anyway. status/ needs no key, so it cannot make the daemon write more often than that
        while writes work; while they fail, each call tries, so recovery shows at once.
        """
        try:
            async with self._reader.execute("SELECT 1") as cur:
                await cur.fetchone()
        except sqlite3.Error as e:
            raise Unavailable(f"database error: {e}") from e
        if self._writer.committed_within(PROBE_EVERY):
            return
        try:
            await self.mark_alive(now)
        except Unavailable:
            why = self._writer.failure or "the daemon is stopping"
            raise Unavailable(f"database cannot take writes: {why}") from None

    async def record_start(self, now: float) -> tuple[float, float] | None:
        """Note that the daemon runs from `now`; return the window it was down, from the
        previous run's last heartbeat (None on a database that has never been served)."""

        def run(conn: sqlite3.Connection) -> tuple[float, float] | None:
            row = conn.execute("SELECT value FROM meta WHERE key = 'alive_at'").fetchone()
            window = (float(row[0]), now) if row is not None else None
            if window is not None:
                _set_meta(conn, "last_downtime", json.dumps(window))
            _set_meta(conn, "alive_at", repr(now))
            return window

        return await self._writer.run(run)  # meta only: the ping cache stays valid

    async def mark_alive(self, now: float) -> None:
        await self._writer.run(lambda conn: _set_meta(conn, "alive_at", repr(now)))

    async def alive_at(self) -> float | None:
        """The daemon's last heartbeat: within a minute of now while it runs."""
        async with self._reader.execute("SELECT value FROM meta WHERE key = 'alive_at'") as cur:
            row = await cur.fetchone()
        return float(row[0]) if row is not None else None

    async def last_downtime(self) -> tuple[float, float] | None:
        sql = "SELECT value FROM meta WHERE key = 'last_downtime'"
        async with self._reader.execute(sql) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        began, ended = json.loads(row[0])
        return float(began), float(ended)


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    """What backup.py checks a copy against before trusting it."""

    version: int  # PRAGMA user_version: the schema steps applied (migrations.py)
    problems: tuple[str, ...]  # integrity_check's findings; empty when the file is sound
    is_heartbeatd: bool  # has heartbeatd's tables and instance ping key
    checks: int
    pings: int


def database_facts(conn: sqlite3.Connection) -> DatabaseFacts:
    """Raises sqlite3.DatabaseError for a file that is not SQLite at all."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    problems = tuple(str(r[0]) for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    is_heartbeatd = {"meta", "checks", "pings"} <= tables and bool(
        conn.execute("SELECT 1 FROM meta WHERE key = 'ping_key'").fetchone()
    )
    if not is_heartbeatd:
        return DatabaseFacts(version, problems, False, 0, 0)
    (checks,) = conn.execute("SELECT count(*) FROM checks").fetchone()
    (pings,) = conn.execute("SELECT count(*) FROM pings").fetchone()
    return DatabaseFacts(version, problems, True, checks, pings)
