"""The checks table: adding, reconciling with the config, updating, removing, rotating
and reading checks."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from heartbeatd.core import model
from heartbeatd.core.errors import NotFound
from heartbeatd.core.model import UNIQUE_KEY_LENGTH, Check, CheckDefinition, Flip, unique_key
from heartbeatd.store.base import (
    DEFINITION_COLUMNS,
    SELECT_CHECK,
    UPSERT_COLUMNS,
    StoreBase,
    _audit,
    _audit_view,
    _check,
    _definition_values,
)


class Checks(StoreBase):
    """Store's checks methods (composed in store/__init__.py)."""

    async def change_state(
        self, ref: str, change: Callable[[Check, float], Flip | None], now: float,
        actor: str | None = None,
    ) -> tuple[Check, Flip | None]:  # fmt: skip
        """Apply a person's pause or resume; the flip is recorded but notifies no one.

        With an `actor`, a change is also written to the audit log, in the same transaction.
        """

        def run(conn: sqlite3.Connection) -> tuple[Check, Flip | None]:
            check = self._resolve(conn, ref)
            before = _audit_view(check)
            flip = change(check, now)
            if flip is not None:
                self._save_state(conn, check)
                self._write_flip(conn, check, flip, now)
                if actor is not None:
                    action = f"check.{change.__name__}"
                    _audit(conn, now, actor, action, check.uuid, before, _audit_view(check))
            return check, flip

        return await self._write(run)

    async def add_check(
        self, definition: CheckDefinition, now: float, actor: str | None = None
    ) -> Check:
        def run(conn: sqlite3.Connection) -> Check:
            check = self._insert_check(conn, definition, now, managed=False)
            if actor is not None:
                _audit(conn, now, actor, "check.create", check.uuid, None, _audit_view(check))
            return check

        return await self._write(run)

    async def reconcile(self, definitions: Iterable[CheckDefinition], now: float) -> list[str]:
        """Make the config file's checks the managed ones, matched by slug; UUIDs stay.

        A managed check no longer in the file is deleted. Returns one line per change.
        """
        wanted = {d.slug: d for d in definitions}

        def run(conn: sqlite3.Connection) -> list[str]:
            changes = []
            rows = conn.execute(f"{SELECT_CHECK} WHERE managed = 1 OR slug IN "
                                f"(SELECT value FROM json_each(?))",
                                (json.dumps(list(wanted)),)).fetchall()  # fmt: skip
            existing = {}
            for row in rows:
                check = _check(row)
                if check.slug in wanted and check.slug not in existing:
                    existing[check.slug] = check
                elif check.managed:
                    conn.execute("DELETE FROM checks WHERE id = ?", (check.id,))
                    changes.append(f"removed check {check.slug} (no longer in the config file)")
            for slug, definition in wanted.items():
                if slug in existing:
                    self._update_definition(conn, existing[slug], definition)
                else:
                    self._insert_check(conn, definition, now, managed=True)
                    changes.append(f"added check {slug} from the config file")
            return changes

        return await self._write(run)

    def _update_definition(
        self, conn: sqlite3.Connection, check: Check, d: CheckDefinition
    ) -> None:
        assignments = ", ".join(f"{c.strip()} = ?" for c in DEFINITION_COLUMNS.split(","))
        conn.execute(
            f"UPDATE checks SET {assignments}, managed = 1 WHERE id = ?",
            (*_definition_values(d), check.id),
        )
        row = conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check.id,)).fetchone()
        updated = _check(row)
        deadline = model.going_down(updated)
        updated.alert_after = deadline.at if deadline else None
        self._save_state(conn, updated)

    async def remove(self, ref: str, actor: str | None = None, now: float = 0.0) -> Check:
        def run(conn: sqlite3.Connection) -> Check:
            check = self._resolve(conn, ref)
            conn.execute("DELETE FROM checks WHERE id = ?", (check.id,))
            if actor is not None:
                _audit(conn, now, actor, "check.delete", check.uuid, _audit_view(check), None)
            return check

        return await self._write(run)

    async def rotate(self, ref: str, actor: str | None = None, now: float = 0.0) -> Check:
        """A new UUID: the old ping URL answers 404 from the commit on."""

        def run(conn: sqlite3.Connection) -> Check:
            check = self._resolve(conn, ref)
            before = _audit_view(check)
            check.uuid = str(uuid.uuid4())
            conn.execute("UPDATE checks SET uuid = ? WHERE id = ?", (check.uuid, check.id))
            if actor is not None:
                _audit(conn, now, actor, "check.rotate", before["uuid"], before, _audit_view(check))
            return check

        return await self._write(run)

    async def get_check(self, ref: str) -> Check:
        return await self._write(lambda conn: self._resolve(conn, ref))

    async def list_checks(self) -> list[Check]:
        async with self._reader.execute(f"{SELECT_CHECK} ORDER BY name, id") as cur:
            return [_check(row) async for row in cur]

    async def check_by_uuid(self, check_uuid: str) -> Check:
        async with self._reader.execute(f"{SELECT_CHECK} WHERE uuid = ?", (check_uuid,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise NotFound()
        return _check(row)

    async def check_by_key(self, key: str) -> Check:
        """The check with UUID `key`, or with unique_key `key` (the read-only identifier that
        page links use); NotFound if none."""
        if len(key) == UNIQUE_KEY_LENGTH:
            for check in await self.list_checks():
                if unique_key(check.uuid) == key:
                    return check
            raise NotFound()
        return await self.check_by_uuid(key)

    async def upsert_check(
        self, unique: Mapping[str, Any], build: Callable[[Check | None], CheckDefinition],
        now: float, actor: str,
    ) -> tuple[Check, bool]:  # fmt: skip
        """Change the first check whose columns equal `unique`, or create one if none does
        (or `unique` is empty); True when created. `build` turns the existing check (None
        for a new one) into the definition to save, and may refuse by raising.
        """
        assert set(unique) <= UPSERT_COLUMNS

        def run(conn: sqlite3.Connection) -> tuple[Check, bool]:
            existing = None
            if unique:
                where = " AND ".join(f"{column} = ?" for column in unique)
                sql = f"{SELECT_CHECK} WHERE {where} ORDER BY id LIMIT 1"
                row = conn.execute(sql, tuple(unique.values())).fetchone()
                existing = _check(row) if row else None
            definition = build(existing)
            if existing is None:
                check = self._insert_check(conn, definition, now, managed=False)
                _audit(conn, now, actor, "check.create", check.uuid, None, _audit_view(check))
                return check, True
            return self._save_definition(conn, existing, definition, now, actor), False

        return await self._write(run)

    async def update_check(
        self, ref: str, build: Callable[[Check | None], CheckDefinition], now: float, actor: str
    ) -> Check:
        """Save what `build` makes of the check `ref`, in one transaction with its audit row."""

        def run(conn: sqlite3.Connection) -> Check:
            check = self._resolve(conn, ref)
            return self._save_definition(conn, check, build(check), now, actor)

        return await self._write(run)

    def _save_definition(
        self, conn: sqlite3.Connection, check: Check, d: CheckDefinition, now: float, actor: str
    ) -> Check:
        assignments = ", ".join(f"{c.strip()} = ?" for c in DEFINITION_COLUMNS.split(","))
        conn.execute(
            f"UPDATE checks SET {assignments} WHERE id = ?", (*_definition_values(d), check.id)
        )
        updated = _check(conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check.id,)).fetchone())
        deadline = model.going_down(updated)
        updated.alert_after = deadline.at if deadline else None
        self._save_state(conn, updated)
        before, after = _audit_view(check), _audit_view(updated)
        if before != after:
            _audit(conn, now, actor, "check.update", check.uuid, before, after)
        return updated
