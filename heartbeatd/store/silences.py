"""Snoozes, and the held alerts every silence leaves in the outbox.

Holding is one reusable piece: _write_flip writes a flip's outbox rows as 'held' while a
silence holds its check (a snooze here, or a [[silence]] window of the config), with the
silence's end as next_attempt, so the dispatcher wakes then and settles them here. Settling
decides per check and notifier by two facts on disk, never by memory, so a restart inside a
window changes nothing: what was last told (the newest down/up row not held or cancelled)
and where the check is now (the newest held row's flip is its latest flip). The newest held
row is sent once if it tells something new (down while told up, up while told down); every
other held row is cancelled. So a check that went down in the window and is still down is
alerted once at its end; one down and told before is not told again; a recovery in the
window is told only if its down was. Later kinds of held alert (dependencies, outage
summaries) can hold rows the same way and be settled by the same rule.
"""

from __future__ import annotations

import sqlite3

from heartbeatd.core.errors import NotFound
from heartbeatd.core.model import Check
from heartbeatd.core.silence import Snooze
from heartbeatd.store.base import (
    SELECT_CHECK,
    BySlug,
    ByUuid,
    StoreBase,
    _audit,
    _check,
)

# The held rows of one check, through the flips index (outbox_flip).
HELD_OF_CHECK = (
    "SELECT o.id, o.notifier, o.event, o.flip_id, o.held_by FROM outbox o "
    "JOIN flips f ON f.id = o.flip_id WHERE f.check_id = ? AND o.state = 'held' ORDER BY o.id"
)
LAST_TOLD = (
    "SELECT o.event FROM outbox o JOIN flips f ON f.id = o.flip_id WHERE f.check_id = ? "
    "AND o.notifier = ? AND o.event IN ('down', 'up') AND o.state IN ('pending', 'sent', "
    "'failed') ORDER BY o.id DESC LIMIT 1"
)
LOOK_AGAIN = (
    "UPDATE outbox SET next_attempt = ? WHERE state = 'held' AND flip_id IN "
    "(SELECT id FROM flips WHERE check_id = ?)"
)


class Silences(StoreBase):
    """Store's snooze and held-alert methods (composed in store/__init__.py)."""

    async def snooze(
        self, target: ByUuid | BySlug | str, until: float, reason: str, now: float,
        actor: str | None = None,
    ) -> Check:  # fmt: skip
        """Snooze a check (by ping URL or by a CLI/API reference) until `until`, replacing
        its snooze; `until` <= now lifts it. Held alerts are looked at again at once."""

        def run(conn: sqlite3.Connection) -> Check:
            check = self._snoozed_check(conn, target)
            conn.execute("DELETE FROM snoozes WHERE until <= ? OR check_id = ?", (now, check.id))
            if until > now:
                conn.execute(
                    "INSERT INTO snoozes (check_id, until, reason, created) VALUES (?, ?, ?, ?)",
                    (check.id, until, reason, now),
                )
            conn.execute(LOOK_AGAIN, (now, check.id))
            if actor is not None:
                after = {"until": until, "reason": reason} if until > now else None
                _audit(conn, now, actor, "silence.snooze", check.uuid, None, after)
            return check

        return await self._writer.run(run)  # snoozes and outbox only: the ping cache stays

    def _snoozed_check(self, conn: sqlite3.Connection, target: ByUuid | BySlug | str) -> Check:
        if isinstance(target, str):
            return self._resolve(conn, target)
        if isinstance(target, ByUuid):
            return self._check_by_uuid(conn, target.uuid)
        found = self._find_by_slug(conn, target)
        if found is None:
            raise NotFound()
        return found

    async def snoozes(self, now: float) -> dict[int, Snooze]:
        """Every snooze still running, by check id."""
        sql = "SELECT check_id, until, reason, created FROM snoozes WHERE until > ?"
        async with self._reader.execute(sql, (now,)) as cur:
            return {row[0]: Snooze(*row) async for row in cur}

    async def snoozed_checks(self, now: float) -> list[tuple[Check, Snooze]]:
        """Every running snooze with its check, for listing."""
        snoozes = await self.snoozes(now)
        sql = f"{SELECT_CHECK} WHERE id IN (SELECT check_id FROM snoozes WHERE until > ?)"
        async with self._reader.execute(sql, (now,)) as cur:
            checks = [_check(row) async for row in cur]
        return [(check, snoozes[check.id]) for check in checks if check.id in snoozes]

    async def look_again_at_held(self, now: float) -> None:
        """Settle every held alert at the dispatcher's next pass: the silences changed."""
        await self._writer.run(
            lambda conn: conn.execute(
                "UPDATE outbox SET next_attempt = ? WHERE state = 'held'", (now,)
            ),
            background=True,
        )

    async def hold_reminder(self, item_id: int, check: Check, now: float) -> bool:
        """A reminder or late warning coming due in a silence: a reminder waits for its end,
        a late warning (stale by then) is dropped. False when nothing silences the check."""

        def run(conn: sqlite3.Connection) -> bool:
            hold = self._hold(conn, check, now)
            if hold is None:
                return False
            conn.execute(
                "UPDATE outbox SET state = CASE event WHEN 'late' THEN 'cancelled' "
                "ELSE state END, next_attempt = ?, last_error = ? WHERE id = ?",
                (hold.until, f"silenced by {hold.name}", item_id),
            )
            return True

        return await self._writer.run(run, background=True)


def settle_held(store: StoreBase, conn: sqlite3.Connection, now: float) -> None:
    """Held alerts whose silence was due to end: held further if another silence (or a
    longer one) now holds their check, else sent or cancelled (see the module's rule)."""
    due = conn.execute(
        "SELECT DISTINCT f.check_id FROM outbox o JOIN flips f ON f.id = o.flip_id "
        "WHERE o.state = 'held' AND o.next_attempt <= ?",
        (now,),
    ).fetchall()
    for (check_id,) in due:
        check = _check(conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check_id,)).fetchone())
        hold = store._hold(conn, check, now)
        if hold is not None:
            conn.execute(LOOK_AGAIN, (hold.until, check_id))
        else:
            _release(conn, check_id, now)


def _release(conn: sqlite3.Connection, check_id: int, now: float) -> None:
    """Send each notifier's newest held alert of the check if it tells something new and
    is still true; cancel the rest."""
    (latest,) = conn.execute("SELECT max(id) FROM flips WHERE check_id = ?", (check_id,)).fetchone()
    held = conn.execute(HELD_OF_CHECK, (check_id,)).fetchall()
    newest = {notifier: (row_id, event, flip_id) for row_id, notifier, event, flip_id, _ in held}
    for notifier, (row_id, event, flip_id) in newest.items():
        told = conn.execute(LAST_TOLD, (check_id, notifier)).fetchone()
        if flip_id == latest and event != (told[0] if told else "up"):
            conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt = ? WHERE id = ?",
                (now, row_id),
            )
    conn.executemany(
        "UPDATE outbox SET state = 'cancelled', last_error = ? "
        "WHERE id = ? AND state = 'held'",
        [(f"held by {held_by}: nothing new to tell when it ended", row_id)
         for row_id, _, _, _, held_by in held],
    )  # fmt: skip
