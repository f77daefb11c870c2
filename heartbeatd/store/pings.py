"""Pings and what they cause: recording a ping and judging the check by it, expiring
and noting late checks, and reading pings, flips, bodies and metrics back."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from heartbeatd.core import model
from heartbeatd.core.errors import NotFound
from heartbeatd.core.model import Check, CheckDefinition
from heartbeatd.core.outcome import (
    MAX_RUN,
    BodyDecision,
    PingIn,
    decide_body,
    outcome,
    pending_search,
)
from heartbeatd.core.rules import assertions
from heartbeatd.core.rules.body import BodyRules
from heartbeatd.store.base import (
    AUTO_GRACE,
    AUTO_PERIOD,
    INSERT_PING,
    SELECT_CHECK,
    BySlug,
    ByUuid,
    FlipRecord,
    PingRecord,
    PingResult,
    StoreBase,
    _check,
    _same_key,
)


class Pings(StoreBase):
    """Store's pings methods (composed in store/__init__.py)."""

    async def record_ping(self, target: ByUuid | BySlug, ping: PingIn, now: float) -> PingResult:
        """Store the ping and its effects; returns after they are committed.

        Body rules that run a regular expression are decided in the searcher thread, not in
        the write batch, which holds the event loop (user_regex.py: what a search may cost). So
        such a ping takes two batches: the first finds the check's rules and writes nothing,
        the second writes the ping with their decision, unless the rules changed meanwhile.
        """
        decision: BodyDecision | None = None
        while True:
            record = functools.partial(
                self._record_ping, target=target, ping=ping, now=now, decision=decision
            )
            result = await self._writer.run(record)
            if isinstance(result, PingResult):
                return result
            loop = asyncio.get_running_loop()
            decided = await loop.run_in_executor(self._searcher, decide_body, result, ping)
            decision = BodyDecision(result, decided)

    def _record_ping(
        self,
        conn: sqlite3.Connection,
        target: ByUuid | BySlug,
        ping: PingIn,
        now: float,
        decision: BodyDecision | None,
    ) -> PingResult | BodyRules:
        """The ping written with its outcome (core/outcome.py decides it), or, before
        anything is written, the body rules record_ping must have search the body first."""
        check, created = self._pinged_check(conn, target, now)
        search = pending_search(check, ping, decision)
        if search is not None:
            return search
        history = functools.partial(_history, conn, check.id)
        run_start = functools.partial(_run_start, conn, check, ping.rid, now)
        result = outcome(check, ping, now, decision, history, run_start)
        conn.execute(
            INSERT_PING,
            (
                check.id, check.n_pings, now, result.kind, ping.exit_status, ping.rid,
                result.duration, ping.scheme, ping.method, ping.remote_addr, ping.ua,
                ping.body or None, ping.body_size,
                json.dumps(result.metrics) if result.metrics else None,
                json.dumps(result.notes) if result.notes else None,
            ),
        )  # fmt: skip
        if result.metrics:
            _keep_last_metrics(conn, check.id, result.metrics)
        self._save_state(conn, check)
        if check.n_pings > self.retention:
            conn.execute(
                "DELETE FROM pings WHERE check_id = ? AND n <= ?",
                (check.id, check.n_pings - self.retention),
            )
        notify = result.flip is not None and self._write_flip(conn, check, result.flip, now)
        return PingResult(check.id, check.alert_after, created, notify, model.late_at(check))

    def _pinged_check(
        self, conn: sqlite3.Connection, target: ByUuid | BySlug, now: float
    ) -> tuple[Check, bool]:
        """The check a ping is for, and whether it was created for it (a slug ping with
        create=1 to a slug no check has yet)."""
        if isinstance(target, ByUuid):
            return self._check_by_uuid(conn, target.uuid), False
        found = self._find_by_slug(conn, target)
        created = found is None
        if found is None:
            if not target.create:
                raise NotFound()
            definition = CheckDefinition(
                name=target.slug, slug=target.slug, period=AUTO_PERIOD, grace=AUTO_GRACE
            )
            found = self._insert_check(conn, definition, now, managed=False)
        self._cache[found.uuid] = found
        return found, created

    async def knows(self, target: ByUuid | BySlug) -> bool:
        """Whether a ping to `target` can be recorded: asked before a ping's body is read, so
        a guessed token gets its 404 without the body. A check pinged lately is in the ping
        cache; any other costs one indexed read. A yes may be out of date (the check deleted
        since), which record_ping still answers with 404; a no never is."""
        if isinstance(target, BySlug):
            sql = (
                "SELECT (SELECT value FROM meta WHERE key = 'ping_key'), "
                "EXISTS (SELECT 1 FROM checks WHERE slug = ?)"
            )
            async with self._reader.execute(sql, (target.slug,)) as cur:
                key, exists = await cur.fetchone() or ("", False)
            return _same_key(key, target.ping_key) and (bool(exists) or target.create)
        if self._cache_generation == self._writer.generation and target.uuid in self._cache:
            return True
        sql = "SELECT 1 FROM checks WHERE uuid = ?"
        async with self._reader.execute(sql, (target.uuid,)) as cur:
            return await cur.fetchone() is not None

    async def expire(
        self, due: Sequence[tuple[int, float]], now: float
    ) -> tuple[list[tuple[int, float | None]], bool]:
        """Take down the checks whose armed moment has passed and is still theirs.

        Returns each check's current going-down moment (for re-arming) and whether any
        notification was queued.
        """

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[int, float | None]], bool]:
            rearm: list[tuple[int, float | None]] = []
            notify = False
            for check, expected in _due_checks(conn, due):
                before = check.alert_after
                flip = model.expire(check, expected)
                if flip is not None:
                    notify = self._write_flip(conn, check, flip, now) or notify
                if flip is not None or check.alert_after != before:
                    self._save_state(conn, check)
                    self._cache.pop(check.uuid, None)
                rearm.append((check.id, check.alert_after))
            return rearm, notify

        # Not _write: dropping the whole ping cache for every chunk of an alert storm made
        # each ping during it read its check again. A rollback drops it all (generation).
        return await self._writer.run(run, background=True)

    async def note_late(self, due: Sequence[tuple[int, float]], now: float) -> bool:
        """Queue `late` notifications for checks that entered their grace at the expected
        moment and are still in it; returns whether any was queued.

        Late is not a stored status, so there is no flip of its own: the rows hang on the
        check's latest flip (the one that made it up), at most once per missed ping.
        """

        def run(conn: sqlite3.Connection) -> bool:
            queued = False
            for check, expected in _due_checks(conn, due):
                if model.late_at(check) != expected:
                    continue
                if model.status_at(check, now) != model.Status.GRACE:
                    continue
                (flip_id,) = conn.execute(
                    "SELECT max(id) FROM flips WHERE check_id = ?", (check.id,)
                ).fetchone()
                for name in self.router(check, "late"):
                    cursor = conn.execute(
                        "INSERT INTO outbox (flip_id, notifier, event, next_attempt, created) "
                        "SELECT ?, ?, 'late', ?, ? WHERE NOT EXISTS (SELECT 1 FROM outbox "
                        "WHERE flip_id = ? AND notifier = ? AND event = 'late' AND created >= ?)",
                        (flip_id, name, now, now, flip_id, name, check.last_ping),
                    )
                    queued = queued or cursor.rowcount > 0
            return queued

        return await self._writer.run(run)  # outbox only: the ping cache stays valid

    async def late_moments(self) -> list[tuple[int, float]]:
        """(id, late_at) of every up check, for arming the wheel at start-up."""
        async with self._reader.execute(
            f"{SELECT_CHECK} WHERE status = 'up' AND alert_after IS NOT NULL"
        ) as cur:
            checks = [_check(row) async for row in cur]
        return [(c.id, at) for c in checks if (at := model.late_at(c)) is not None]

    async def armed(self) -> list[tuple[int, float, float]]:
        """(id, alert_after, grace) of every check with a going-down moment, for the wheel."""
        async with self._reader.execute(
            "SELECT id, alert_after, grace FROM checks WHERE alert_after IS NOT NULL"
        ) as cur:
            return [(row[0], row[1], row[2]) async for row in cur]

    async def pings(self, check_id: int, limit: int = 100) -> list[PingRecord]:
        """Newest first, as the pings API lists them."""
        sql = (
            f"SELECT {', '.join(PING_FIELDS)} FROM pings WHERE check_id = ? ORDER BY n DESC LIMIT ?"
        )
        async with self._reader.execute(sql, (check_id, limit)) as cur:
            return [_ping_record(row) async for row in cur]

    async def flips(self, check_id: int, limit: int = 100) -> list[FlipRecord]:
        sql = (
            "SELECT at, noticed, old_status, new_status, reason, detail FROM flips "
            "WHERE check_id = ? ORDER BY at DESC, id DESC LIMIT ?"
        )
        async with self._reader.execute(sql, (check_id, limit)) as cur:
            return [
                FlipRecord(at=at, noticed=noticed, old_status=old, new_status=new, reason=reason,
                           detail=detail)
                async for at, noticed, old, new, reason, detail in cur
            ]  # fmt: skip

    async def recent_runs(self, limit: int = 30) -> dict[int, str]:
        """Each check's last `limit` finished runs, oldest first, one digit per run ('0'
        success, '1' fail): the dashboard's strip. One query, answered from the pings index
        alone (its last column is `kind`)."""
        sql = (
            "SELECT c.id, (SELECT group_concat(k, '') FROM (SELECT p.kind = 'fail' AS k "
            "FROM pings p WHERE p.check_id = c.id AND p.kind IN ('success', 'fail') "
            "ORDER BY p.n DESC LIMIT ?)) FROM checks c"
        )
        async with self._reader.execute(sql, (limit,)) as cur:
            return {row[0]: (row[1] or "")[::-1] async for row in cur}

    async def ping_body(self, check_id: int, n: int) -> bytes | None:
        """The stored body of ping number `n`, or None if it has none or was pruned."""
        sql = "SELECT body FROM pings WHERE check_id = ? AND n = ?"
        async with self._reader.execute(sql, (check_id, n)) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row and row[0] else None

    async def flips_between(
        self, check_id: int, start: float | None, end: float | None
    ) -> list[tuple[float, str]]:
        """(at, new status) of a check's flips in [start, end), newest first."""
        sql = (
            "SELECT at, new_status FROM flips WHERE check_id = ? AND at >= coalesce(?, at) "
            "AND at < coalesce(?, at + 1) ORDER BY at DESC, id DESC"
        )
        async with self._reader.execute(sql, (check_id, start, end)) as cur:
            return [(row[0], row[1]) async for row in cur]

    async def last_metrics(self) -> dict[int, dict[str, float]]:
        """check id -> the latest value of each metric its pings carried, for /metrics.

        Read from metric_last, which the ping path keeps (_keep_last_metrics), not from the
        pings' JSON: a scrape every 15 s of 10,000 checks must not parse a million pings.
        A value outlives the ping that carried it, as the last reported value should.
        """
        sql = "SELECT check_id, name, value FROM metric_last"
        found: dict[int, dict[str, float]] = {}
        async with self._reader.execute(sql) as cur:
            async for check_id, name, value in cur:
                found.setdefault(check_id, {})[name] = value
        return found


MAX_TRACKED_METRICS = 64  # metric names whose latest value a check keeps (4 pings' worth)


def _due_checks(
    conn: sqlite3.Connection, due: Sequence[tuple[int, float]]
) -> Iterator[tuple[Check, float]]:
    """The checks of the monitor's due (id, moment) pairs that still exist, read afresh."""
    for check_id, expected in due:
        row = conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check_id,)).fetchone()
        if row is not None:
            yield _check(row), expected


def _keep_last_metrics(
    conn: sqlite3.Connection, check_id: int, metrics: Mapping[str, float]
) -> None:
    """Remember a ping's metrics as the check's latest (issue 8): only pings that carry
    numbers pay for it, one upsert of a small table per metric. A name new to the check is
    taken only while it has fewer than MAX_TRACKED_METRICS: a pinger inventing names on every
    ping would otherwise grow the table, and /metrics, without bound."""
    conn.executemany(
        "INSERT INTO metric_last (check_id, name, value) SELECT ?1, ?2, ?3 "
        "WHERE EXISTS (SELECT 1 FROM metric_last WHERE check_id = ?1 AND name = ?2) "
        "OR (SELECT count(*) FROM metric_last WHERE check_id = ?1) < ?4 "
        "ON CONFLICT (check_id, name) DO UPDATE SET value = excluded.value",
        [(check_id, name, value, MAX_TRACKED_METRICS) for name, value in metrics.items()],
    )


RUN_SCAN = 1000  # a finish looks this many pings back for its start, at most


def _run_start(conn: sqlite3.Connection, check: Check, rid: str | None, now: float) -> float | None:
    """When the run a finish with `rid` closes began: the newest start of that rid in the
    check's pings, unless a finish of it came later (outcome.run_length). One walk of the
    (check_id, n, kind) index, newest first, stopping at the first ping of the rid; at most
    RUN_SCAN pings and MAX_RUN back."""
    row = conn.execute(
        "SELECT kind, created FROM pings WHERE check_id = ? AND n > ? "
        "AND kind IN ('start', 'success', 'fail') AND rid IS ? AND created > ? "
        "ORDER BY n DESC LIMIT 1",
        (check.id, check.n_pings - RUN_SCAN, rid, now - MAX_RUN),
    ).fetchone()
    return float(row[1]) if row is not None and row[0] == "start" else None


def _history(conn: sqlite3.Connection, check_id: int, metric: str) -> list[float]:
    """A metric's values in the check's last finished runs, newest first (for `p95 * 3`).

    Walks the check's pings newest first on the (check_id, n) index, so it reads at most the
    retained pings of one check. A run's measured duration counts as `duration`.
    """
    rows = conn.execute(
        "SELECT coalesce(json_extract(metrics, ?), iif(? = 'duration', duration, NULL)) AS v "
        "FROM pings WHERE check_id = ? AND kind IN ('success', 'fail') AND v IS NOT NULL "
        "ORDER BY n DESC LIMIT ?",
        (f"$.{metric}", metric, check_id, assertions.HISTORY),
    )
    return [float(value) for (value,) in rows]


PING_FIELDS = tuple(PingRecord.__annotations__)  # Store.pings' columns, named as its keys


def _ping_record(row: Sequence[Any]) -> PingRecord:
    """A row of Store.pings' SELECT, its columns named by PING_FIELDS (zipped, not indexed)."""
    v = dict(zip(PING_FIELDS, row, strict=True))
    return PingRecord(
        n=v["n"], created=v["created"], kind=v["kind"], exit_status=v["exit_status"],
        rid=v["rid"], duration=v["duration"], scheme=v["scheme"], method=v["method"],
        remote_addr=v["remote_addr"], ua=v["ua"], body=v["body"], body_size=v["body_size"],
        metrics=json.loads(v["metrics"]) if v["metrics"] else {},
        notes=json.loads(v["notes"]) if v["notes"] else [],
    )  # fmt: skip
