"""Users, sessions, API keys and the audit log."""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from heartbeatd.core.errors import Conflict, NotFound
from heartbeatd.store import apikeys
from heartbeatd.store.base import (
    LOGIN_FAILURE_WINDOW,
    MAX_AUDIT_TEXT,
    ApiKey,
    StoreBase,
    _audit,
)


class Accounts(StoreBase):
    """Store's accounts methods (composed in store/__init__.py)."""

    async def set_password(
        self, name: str, password_hash: str, now: float, role: str | None = None
    ) -> None:
        """Create the user (an admin unless `role` says otherwise) or change their password,
        and their role if given; a change ends all their sessions."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO users (name, password, created, role) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET password = excluded.password, "
                "role = coalesce(?, role)",
                (name, password_hash, now, role or "admin", role),
            )
            conn.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)",
                (name,),
            )

        await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def add_user(self, name: str, password_hash: str, role: str, now: float) -> None:
        """A new user; Conflict if the name is taken (set_password changes an existing one)."""

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO users (name, password, created, role) VALUES (?, ?, ?, ?)",
                    (name, password_hash, now, role),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"there is a user {name!r} already") from None

        await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def remove_user(self, name: str) -> None:
        """Delete the user and so their sessions; NotFound for an unknown name."""

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

        await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def users(self) -> list[dict[str, Any]]:
        """Every user: name, role, when created, and whether a password can log them in."""
        async with self._reader.execute(
            "SELECT name, role, created, password LIKE 'scrypt$%' FROM users ORDER BY name"
        ) as cur:
            rows = await cur.fetchall()
        return [
            {"name": name, "role": role, "created": created, "password": bool(usable)}
            for name, role, created, usable in rows
        ]

    async def role_of(self, name: str) -> str | None:
        """A user's role, or None for a name that is no user here."""
        async with self._reader.execute("SELECT role FROM users WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def password_of(self, name: str) -> tuple[int, str] | None:
        """(user id, stored hash), or None for an unknown user."""
        async with self._reader.execute(
            "SELECT id, password FROM users WHERE name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        user_id, hashed = row
        return user_id, hashed

    async def upgrade_password(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Replace a hash made at an older cost with one at the current cost, unless it has
        changed meanwhile. Unlike set_password, the user's sessions stay: nothing changed."""
        await self._writer.run(  # no check changes: the ping cache stays valid
            lambda conn: conn.execute(
                "UPDATE users SET password = ? WHERE id = ? AND password = ?",
                (new_hash, user_id, old_hash),
            )
        )

    async def user_count(self) -> int:
        async with self._reader.execute("SELECT count(*) FROM users") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def add_session(
        self, token_hash: str, user_id: int, csrf: str, now: float, expires: float
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_hash, user_id, csrf, now, expires),
            )

        await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def session(self, token_hash: str, now: float) -> tuple[str, str, str] | None:
        """(user name, CSRF token, role) of a live session, or None."""
        async with self._reader.execute(
            "SELECT u.name, s.csrf, u.role FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.token_hash = ? AND s.expires > ?",
            (token_hash, now),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        name, csrf, role = row
        return name, csrf, role

    async def end_session(self, token_hash: str) -> None:
        await self._writer.run(  # no check changes: the ping cache stays valid
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        )

    async def create_api_key(
        self, name: str | None, read_only: bool, now: float, actor: str
    ) -> tuple[str, str]:
        """A new key and its name; the key is returned this once and only its hash is kept."""
        key = apikeys.new_key(read_only)

        def run(conn: sqlite3.Connection) -> str:
            chosen = name or _free_key_name(conn)
            taken = conn.execute(
                "SELECT 1 FROM api_keys WHERE name = ? AND revoked IS NULL", (chosen,)
            ).fetchone()
            if taken:
                raise Conflict(f"an API key named {chosen!r} exists; revoke it or pick another")
            cursor = conn.execute(
                "INSERT INTO api_keys (name, hash, read_only, created) VALUES (?, ?, ?, ?)",
                (chosen, apikeys.digest(key), int(read_only), now),
            )
            after = {"id": cursor.lastrowid, "name": chosen, "read_only": read_only}
            _audit(conn, now, actor, "apikey.create", chosen, None, after)
            return chosen

        return key, await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def api_keys(self) -> list[dict[str, Any]]:
        """Every key ever made, newest last, without its hash."""
        sql = "SELECT id, name, read_only, created, last_used, revoked FROM api_keys ORDER BY id"
        async with self._reader.execute(sql) as cur:
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) async for row in cur]
        for row in rows:
            row["read_only"] = bool(row["read_only"])
        return rows

    async def revoke_api_key(self, ref: str, now: float, actor: str) -> str:
        """Revoke the live key named `ref` (or with id `ref`); returns its name."""

        def run(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT id, name, read_only FROM api_keys WHERE revoked IS NULL AND "
                "(name = ? OR CAST(id AS TEXT) = ?) ORDER BY name = ? DESC LIMIT 1",
                (ref, ref, ref),
            ).fetchone()
            if row is None:
                raise NotFound(f"no live API key named {ref!r}")
            key_id, name, read_only = row
            conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (now, key_id))
            before = {"id": key_id, "name": name, "read_only": bool(read_only)}
            _audit(conn, now, actor, "apikey.revoke", name, before, None)
            return str(name)

        return await self._writer.run(run)

    async def authenticate(self, key: str, now: float) -> ApiKey | None:
        """The live key `key` is, or None.

        Looked up by its hash (indexed), then compared in constant time; `last_used` is
        written at most once a minute so API reads do not each cost a commit.
        """
        wanted = apikeys.digest(key)
        async with self._reader.execute(
            "SELECT id, name, hash, read_only, last_used FROM api_keys "
            "WHERE hash = ? AND revoked IS NULL",
            (wanted,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        key_id, name, hashed, read_only, last_used = row
        if not hmac.compare_digest(hashed, wanted):
            return None
        if last_used is None or now - last_used >= 60:
            await self._writer.run(
                lambda conn: conn.execute(
                    "UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id)
                )
            )
        return ApiKey(key_id, name, bool(read_only))

    async def record_audit(
        self, now: float, actor: str, action: str, target: str,
        before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """An audit row for a change made outside the store's own write paths (a login)."""
        await self._writer.run(lambda conn: _audit(conn, now, actor, action, target, before, after))

    async def record_login_failure(self, now: float, actor: str, source: str) -> None:
        """A failed login from `source` as `actor`: one audit row per source and actor per
        LOGIN_FAILURE_WINDOW, counting the failures in `after`, so a guesser adds no rows."""

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT id, after FROM audit WHERE at >= ? AND action = 'login.fail' "
                "AND actor = ? AND target = ? ORDER BY id DESC LIMIT 1",
                (now - LOGIN_FAILURE_WINDOW, actor[:MAX_AUDIT_TEXT], source[:MAX_AUDIT_TEXT]),
            ).fetchone()
            if row is None:
                _audit(conn, now, actor, "login.fail", source, None, {"failures": 1})
                return
            audit_id, after = row
            failures = json.loads(after or "{}").get("failures", 1) + 1
            conn.execute(
                "UPDATE audit SET after = ? WHERE id = ?",
                (json.dumps({"failures": failures}), audit_id),
            )

        await self._writer.run(run)  # no check changes: the ping cache stays valid

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """Audit rows, newest first, with `before` and `after` decoded."""
        sql = (
            "SELECT id, at, actor, action, target, before, after FROM audit "
            "ORDER BY id DESC LIMIT ?"
        )
        async with self._reader.execute(sql, (limit,)) as cur:
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) async for row in cur]
        for row in rows:
            for key in ("before", "after"):
                row[key] = json.loads(row[key]) if row[key] is not None else None
        return rows


def _free_key_name(conn: sqlite3.Connection) -> str:
    """`key1`, `key2`, ...: the first such name no live key has."""
    (count,) = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    number = count + 1
    while conn.execute(
        "SELECT 1 FROM api_keys WHERE name = ? AND revoked IS NULL", (f"key{number}",)
    ).fetchone():
        number += 1
    return f"key{number}"
