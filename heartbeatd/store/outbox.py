"""The notification outbox: due notifications, their sent/failed/cancelled outcomes,
shifting pending rows, and listing the outbox."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from heartbeatd.core.model import Flip
from heartbeatd.store.base import (
    DUE_FIELDS,
    DUE_ORDER,
    DUE_SQL,
    FULL_SWEEP,
    NEXT_PENDING,
    OutboxItem,
    StoreBase,
    _check,
)
from heartbeatd.store.silences import settle_held


class Outbox(StoreBase):
    """Store's outbox methods (composed in store/__init__.py)."""

    async def due_notifications(
        self, now: float, room: Mapping[str, tuple[int, Collection[int]]]
    ) -> tuple[list[OutboxItem], float | None, int]:
        """Held alerts whose silence ended settled (silences.py), then notifications to start
        now, with what their messages need, when the earliest
        pending one is due (None: nothing pending), and the newest row's id (see shift_pending).

        `room` maps each configured notifier to how many more deliveries it may start and the
        rows it already has in flight: each notifier's queue is read on its own, so a target
        that never answers fills only its own slots. Rows for a notifier no longer in the
        config fail at once. A sweep of every pending row takes a millisecond per 10,000, so
        most reads sweep only the rows written since the last; all of them are swept when the
        names change (a reload) and once every FULL_SWEEP seconds, for the rare row written
        under a reused id (ids of deleted rows are reused).

        Read through the writer, not the reader: the dispatcher must never see a row as pending
        after its delivery was recorded, or it would send it twice; writer batches are
        ordered, so this sees every outcome recorded before it.
        """
        known = frozenset(room)
        swept_names, swept_up_to, full_at = self._swept
        full = known != swept_names or not 0 <= now - full_at < FULL_SWEEP
        since = -1 if full else swept_up_to

        def read(conn: sqlite3.Connection) -> tuple[list[OutboxItem], float | None, int]:
            settle_held(self, conn, now)
            conn.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, "
                "last_error = 'no notifier named ' || quote(notifier) || ' in the config' "
                "WHERE id > ? AND state = 'pending' "
                f"AND notifier NOT IN ({', '.join('?' * len(known))})",
                (since, *known),
            )
            due: list[OutboxItem] = []
            for notifier, (limit, busy) in room.items():
                if limit <= 0:
                    continue
                sql = f"{DUE_SQL} AND o.id NOT IN ({', '.join('?' * len(busy))}) {DUE_ORDER}"
                rows = conn.execute(sql, (now, notifier, *busy, limit))
                due += [_outbox_item(row) for row in rows]
            (next_at,) = conn.execute(NEXT_PENDING).fetchone()
            (newest,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
            return due, next_at, newest

        found = await self._writer.run(read, background=True)  # a read: the ping cache stays
        self._swept = (known, found[2], now if full else full_at)  # once committed
        return found

    async def shift_pending(self, step: float, up_to_id: int) -> int:
        """Move pending rows up to `up_to_id` by a wall-clock step of `step` seconds; returns
        how many. Their times are wall-clock, so without this a step back an hour would hold a
        retry for an hour, and a step forward would end its retry_for an hour early. Rows
        written after the step are already in the new time, hence the id bound."""
        cursor = await self._writer.run(
            lambda conn: conn.execute(
                "UPDATE outbox SET next_attempt = next_attempt + ?, created = created + ? "
                "WHERE state = 'pending' AND id <= ?",
                (step, step, up_to_id),
            )
        )
        return int(cursor.rowcount)

    async def notification_sent(
        self, item_id: int, now: float, remind_at: float | None = None
    ) -> None:
        """Record a delivery and, for a notifier that repeats, the outage's next reminder due
        at `remind_at`: a `repeat` row for the same flip and notifier. One transaction, so no
        crash or failed write can record the send but lose its reminder, which would end the
        reminders of that outage. A row deleted meanwhile (its check removed) gets neither."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?, "
                "last_error = '' WHERE id = ?",
                (now, item_id),
            )
            if remind_at is not None:
                conn.execute(
                    "INSERT INTO outbox (flip_id, notifier, event, next_attempt, created) "
                    "SELECT flip_id, notifier, 'repeat', ?, ? FROM outbox WHERE id = ?",
                    (remind_at, now, item_id),
                )

        await self._writer.run(run, background=True)  # outbox only: the ping cache stays valid

    async def notification_cancelled(self, item_id: int, why: str) -> None:
        """A reminder whose outage has ended: never sent."""
        await self._writer.run(  # outbox only: the ping cache stays valid
            lambda conn: conn.execute(
                "UPDATE outbox SET state = 'cancelled', last_error = ? WHERE id = ?",
                (why, item_id),
            ),
            background=True,
        )

    async def notification_failed(self, item_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; `retry_at` None gives up on it."""
        state = "pending" if retry_at is not None else "failed"
        await self._writer.run(  # outbox only: the ping cache stays valid
            lambda conn: conn.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, "
                "next_attempt = coalesce(?, next_attempt) WHERE id = ?",
                (state, error[:1000], retry_at, item_id),
            ),
            background=True,
        )

    async def outbox(self, limit: int = 1000, check_id: int | None = None) -> list[dict[str, Any]]:
        """Notifications newest first, with each one's outcome: what `notify log` shows."""
        sql = (
            "SELECT o.id, o.notifier, o.event, o.state, o.attempts, o.last_error, o.sent_at, "
            "o.next_attempt, f.check_id, c.slug, f.at FROM outbox o "
            "JOIN flips f ON f.id = o.flip_id JOIN checks c ON c.id = f.check_id "
            "WHERE ? IS NULL OR f.check_id = ? ORDER BY o.id DESC LIMIT ?"
        )
        async with self._reader.execute(sql, (check_id, check_id, limit)) as cur:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) async for row in cur]

    async def outbox_depth(self) -> int:
        """Notifications waiting to be delivered (pending, including those being retried)."""
        async with self._reader.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _outbox_item(row: Sequence[Any]) -> OutboxItem:
    """A row of DUE_SQL: DUE_FIELDS, then the check's CHECK_FIELDS (both zipped by name)."""
    due = dict(zip(DUE_FIELDS, row[: len(DUE_FIELDS)], strict=True))
    metrics = json.loads(due["metrics"]) if due["metrics"] else {}
    if due["duration"] is not None:
        metrics.setdefault("duration", due["duration"])
    flip = Flip(due["at"], due["old_status"], due["new_status"], due["reason"], due["detail"])
    return OutboxItem(
        id=due["id"], notifier=due["notifier"], event=due["event"], attempts=due["attempts"],
        flip=flip, check=_check(row[len(DUE_FIELDS) :]), last_body=bytes(due["body"] or b""),
        exit_status=due["exit_status"], down_since=due["down_since"], flip_id=due["flip_id"],
        created=due["created"], flip_is_latest=bool(due["flip_is_latest"]), last_metrics=metrics,
        held_by=due["held_by"],
    )  # fmt: skip
