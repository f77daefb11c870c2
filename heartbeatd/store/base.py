"""What every family of the store shares: the records callers pass and get back, the SQL
that more than one family runs, the connections, the write path and the ping cache.

Writes go through the group-commit Writer (writer.py) as functions run in its batches, where the
rules of model.py are applied to the row just read, so a ping, the flip it causes and that flip's
outbox rows are one transaction. Reads that need no write lock use an aiosqlite connection.
StoreBase declares these so mypy follows the family mixins' calls across modules.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypedDict, TypeVar

import aiosqlite

from heartbeatd.core import model, rules
from heartbeatd.core.errors import Conflict, NotFound, Unavailable
from heartbeatd.core.model import Check, CheckDefinition, Flip
from heartbeatd.core.silence import Hold, Silence, Snooze, holding
from heartbeatd.store.migrations import migrate
from heartbeatd.store.writer import Writer, connect

CHECK_COLUMNS = (
    "id, uuid, name, slug, tags, description, period, cron, tz, grace, misses, max_runtime, "
    "manual_resume, methods, notifiers, managed, created, status, last_ping, last_start, "
    "last_start_rid, last_duration, n_pings, alert_after, rules, failures, recoveries, early, "
    "fail_streak, ok_streak, streak_at"
)
SELECT_CHECK = f"SELECT {CHECK_COLUMNS} FROM checks"
CHECK_FIELDS = tuple(c.strip() for c in CHECK_COLUMNS.split(","))  # _check decodes by these
SAVE_STATE = (
    "UPDATE checks SET status = ?, last_ping = ?, last_start = ?, last_start_rid = ?, "
    "last_duration = ?, n_pings = ?, alert_after = ?, fail_streak = ?, ok_streak = ?, "
    "streak_at = ? WHERE id = ?"
)
INSERT_PING = (
    "INSERT INTO pings (check_id, n, created, kind, exit_status, rid, duration, scheme, method, "
    "remote_addr, ua, body, body_size, metrics, notes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
DEFINITION_COLUMNS = (
    "name, slug, tags, description, period, cron, tz, grace, misses, max_runtime, "
    "manual_resume, methods, notifiers, rules, failures, recoveries, early"
)
# Auto-provisioned checks (?create=1) get Healthchecks' defaults: a day's period, an hour's grace.
AUTO_PERIOD, AUTO_GRACE = 86400.0, 3600.0

Router = Callable[[Check, str], Sequence[str]]  # (check, event) -> notifier names
T = TypeVar("T")
# The next moment the dispatcher has work: a pending row due, or a held row's silence ending
# (each read from its own partial index; min() of two values is NULL when either is).
NEXT_PENDING = (
    "SELECT min(coalesce(p, h), coalesce(h, p)) FROM (SELECT "
    "(SELECT min(next_attempt) FROM outbox WHERE state = 'pending') AS p, "
    "(SELECT min(next_attempt) FROM outbox WHERE state = 'held') AS h)"
)
# A due outbox row with what its message needs: the check, the flip, the last ping's body and
# exit status, when the outage began (for up), and whether the flip is still the latest.
DUE_SQL = (
    "SELECT o.id, o.notifier, o.event, o.attempts, f.at, f.old_status, f.new_status, "
    "f.reason, f.detail, p.body, p.exit_status, "
    "CASE WHEN f.new_status = 'up' THEN (SELECT max(d.at) FROM flips d WHERE "
    "d.check_id = c.id AND d.new_status = 'down' AND d.at <= f.at) END, o.flip_id, "
    "o.created, (SELECT max(l.id) FROM flips l WHERE l.check_id = c.id) = f.id, "
    "p.metrics, p.duration, o.held_by, "
    f"{', '.join('c.' + c for c in CHECK_FIELDS)} "
    "FROM outbox o JOIN flips f ON f.id = o.flip_id JOIN checks c ON c.id = f.check_id "
    "LEFT JOIN pings p ON p.check_id = c.id AND p.n = c.n_pings "  # the newest ping
    "WHERE o.state = 'pending' AND o.next_attempt <= ? AND o.notifier = ?"
)
# DUE_SQL's columns before the check's, named in their order for _outbox_item.
DUE_FIELDS = (
    "id", "notifier", "event", "attempts", "at", "old_status", "new_status", "reason", "detail",
    "body", "exit_status", "down_since", "flip_id", "created", "flip_is_latest", "metrics",
    "duration", "held_by",
)  # fmt: skip
DUE_ORDER = "ORDER BY o.next_attempt LIMIT ?"
FULL_SWEEP = 60.0  # seconds between sweeps of every pending row for gone notifiers
CACHE_LIMIT = 50_000  # checks kept in memory for pings; ~25 MB at the limit
# Columns the management API's `unique` upsert may match on (name, slug, tags, timeout, grace).
UPSERT_COLUMNS = frozenset({"name", "slug", "tags", "period", "grace"})
MAX_AUDIT_TEXT = 200  # characters of an audit row's actor and target
LOGIN_FAILURE_WINDOW = 60.0  # one login.fail row per source and name in this many seconds
# What retention prunes, by table: the time column a row ages by, and what else must hold for
# it to go. Flips stay while a notification of theirs is pending (the outbox row would go with
# its flip) and the newest flip before the cutoff stays, so a check's status at any retained
# moment, and an outage's start, are still known. Each table's rowid order is its time order.
PRUNABLE: dict[str, tuple[str, str]] = {
    "audit": ("at", ""),
    "sessions": ("expires", ""),
    "outbox": ("created", "AND state NOT IN ('pending', 'held')"),
    "flips": (
        "at",
        "AND EXISTS (SELECT 1 FROM flips n WHERE n.check_id = flips.check_id "
        "AND n.at > flips.at AND n.at < :cutoff) AND NOT EXISTS (SELECT 1 FROM outbox o "
        "WHERE o.flip_id = flips.id AND o.state IN ('pending', 'held'))",
    ),
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class ByUuid:
    uuid: str


@dataclass(frozen=True, slots=True)
class BySlug:
    ping_key: str
    slug: str
    create: bool = False


class PingRecord(TypedDict):
    """A stored ping as Store.pings reads it, its metrics and notes decoded from their JSON.
    A dict, not a dataclass: the page, the API and the CLI each show it with fields of their
    own added ({**ping, ...})."""

    n: int
    created: float
    kind: str  # success, start, fail, log, ign
    exit_status: int | None
    rid: str | None
    duration: float | None  # set when this ping closed a started run
    scheme: str
    method: str
    remote_addr: str
    ua: str
    body: bytes | None
    body_size: int  # bytes the client sent; `body` keeps at most ping_body_limit of them
    metrics: dict[str, float]
    notes: list[str]


class FlipRecord(TypedDict):
    """A stored flip as Store.flips reads it (a dict for the reason PingRecord is)."""

    at: float  # when it became true (the deadline for a timeout)
    noticed: float  # when heartbeatd wrote it
    old_status: str
    new_status: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PingResult:
    check_id: int
    alert_after: float | None
    created: bool
    notify: bool  # a flip with notifications was written
    late_at: float | None  # when the check turns late unless pinged again


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    notifier: str
    event: str
    attempts: int
    flip: Flip
    check: Check
    last_body: bytes  # of the check's newest ping, quoted in the message
    exit_status: int | None  # of the check's newest ping
    down_since: float | None  # for an up event: when the outage began
    flip_id: int
    created: float  # when the row was written: retries stop retry_for after it
    flip_is_latest: bool  # no status change since its flip: a reminder still applies
    last_metrics: dict[str, float]  # of the check's newest ping, its run's duration included
    held_by: str | None = None  # the silence this alert was held for, told when it ends


def _check(row: Sequence[Any]) -> Check:
    """A row of SELECT_CHECK, its columns named by CHECK_FIELDS (zipped, never indexed, so a
    column added or moved in CHECK_COLUMNS cannot shift another into the wrong field)."""
    values = dict(zip(CHECK_FIELDS, row, strict=True))
    values["desc"] = values.pop("description")
    values["manual_resume"] = bool(values["manual_resume"])
    notifiers = values["notifiers"]
    values["notifiers"] = tuple(json.loads(notifiers)) if notifiers is not None else None
    values["managed"] = bool(values["managed"])
    values["rules"] = rules.from_json(values["rules"])
    return Check(**values)


def _definition_values(d: CheckDefinition) -> tuple[Any, ...]:
    notifiers = json.dumps(list(d.notifiers)) if d.notifiers is not None else None
    return (
        d.name, d.slug, " ".join(d.tags), d.desc, d.period, d.cron, d.tz, d.grace, d.misses,
        d.max_runtime, int(d.manual_resume), d.methods, notifiers, d.rules.to_json(),
        d.failures, d.recoveries, d.early,
    )  # fmt: skip


def _looks_like_uuid(ref: str) -> bool:
    try:
        return str(uuid.UUID(ref)) == ref.lower()
    except ValueError:
        return False


class StoreBase:
    """Built unopened so the app can hold it from the start; `open()` connects and migrates."""

    _writer: Writer
    _reader: aiosqlite.Connection

    def __init__(
        self,
        path: Path | str,
        retention: int = 100,
        on_external_change: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.retention = retention
        self.router: Router = lambda check, event: ()
        self.silences: tuple[Silence, ...] = ()  # the config's [[silence]] windows
        self._on_external_change = on_external_change
        self._cache: dict[str, Check] = {}
        self._cache_generation = -1
        # One thread for the body rules' regular expressions (record_ping), so a costly search
        # never holds the event loop and costly searches wait for each other, not for a core.
        self._searcher = ThreadPoolExecutor(1, thread_name_prefix="heartbeatd-regex")
        # The notifier names the outbox was last swept for, the newest row swept then, and
        # when every pending row was last swept (see due_notifications).
        self._swept: tuple[frozenset[str], int, float] = (frozenset(), -1, 0.0)

    async def open(self) -> None:
        try:
            conn = connect(self.path)
            migrate(conn)
            _ensure_ping_key(conn)
        except (sqlite3.Error, RuntimeError) as e:  # RuntimeError: a newer schema (migrate)
            raise Unavailable(f"cannot open database {self.path}: {e}") from e
        self._writer = Writer(conn, asyncio.get_running_loop(), self._on_external_change)
        self._reader = await aiosqlite.connect(self.path)
        await self._reader.execute("PRAGMA query_only = ON")

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
        self._searcher.shutdown()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- pings ---------------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T], background: bool = False) -> T:
        """A write that may change any check, so the ping cache is dropped. Writes that change
        no check (the outbox's, meta's, the audit log's) go to the writer directly and keep the
        cache: dropping it makes the next ping of every check read its row again.
        `background`: see writer.py (flips and outbox bookkeeping give way to pings)."""

        def run(conn: sqlite3.Connection) -> T:
            try:
                return fn(conn)
            finally:
                self._cache.clear()

        return await self._writer.run(run, background)

    def _check_by_uuid(self, conn: sqlite3.Connection, check_uuid: str) -> Check:
        """The check, from the cache of pinged checks when it is current.

        Pings are the hot path and the daemon is their only writer, so the row a ping needs is
        usually the one the last ping left. The cache is dropped whenever it may be stale: the
        writer's generation moves on any rollback and on another process's commit, expire
        drops the checks it changes, and every other kind of write clears it (see _write).
        """
        if self._cache_generation != self._writer.generation:
            self._cache.clear()
            self._cache_generation = self._writer.generation
        check = self._cache.get(check_uuid)
        if check is None:
            row = conn.execute(f"{SELECT_CHECK} WHERE uuid = ?", (check_uuid,)).fetchone()
            if row is None:
                raise NotFound()
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            check = self._cache[check_uuid] = _check(row)
        return check

    def _find_by_slug(self, conn: sqlite3.Connection, target: BySlug) -> Check | None:
        key = conn.execute("SELECT value FROM meta WHERE key = 'ping_key'").fetchone()[0]
        if not _same_key(key, target.ping_key):
            raise NotFound()
        rows = conn.execute(f"{SELECT_CHECK} WHERE slug = ? LIMIT 2", (target.slug,)).fetchall()
        if len(rows) > 1:
            raise Conflict("ambiguous slug")
        return _check(rows[0]) if rows else None

    # -- state changes -------------------------------------------------------------------

    def _save_state(self, conn: sqlite3.Connection, check: Check) -> None:
        conn.execute(
            SAVE_STATE,
            (
                check.status, check.last_ping, check.last_start, check.last_start_rid,
                check.last_duration, check.n_pings, check.alert_after, check.fail_streak,
                check.ok_streak, check.streak_at, check.id,
            ),
        )  # fmt: skip

    # -- definitions ---------------------------------------------------------------------

    def _insert_check(
        self, conn: sqlite3.Connection, d: CheckDefinition, now: float, managed: bool
    ) -> Check:
        placeholders = ", ".join("?" * (len(DEFINITION_COLUMNS.split(",")) + 3))
        cursor = conn.execute(
            f"INSERT INTO checks (uuid, {DEFINITION_COLUMNS}, managed, created) "
            f"VALUES ({placeholders})",
            (str(uuid.uuid4()), *_definition_values(d), int(managed), now),
        )
        row = conn.execute(f"{SELECT_CHECK} WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _check(row)

    def _write_flip(self, conn: sqlite3.Connection, check: Check, flip: Flip, now: float) -> bool:
        """The flip and, in the same transaction, one outbox row per notifier to tell: held
        until its silence ends when one holds the check (store/silences.py settles them)."""
        cursor = conn.execute(
            "INSERT INTO flips (check_id, at, noticed, old_status, new_status, reason, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (check.id, flip.at, now, flip.old, flip.new, flip.reason, flip.detail),
        )
        if not flip.notifies:
            return False
        event = "down" if flip.new == model.Status.DOWN else "up"
        names = self.router(check, event)
        hold = self._hold(conn, check, now)
        state, due, held_by = ("held", hold.until, hold.name) if hold else ("pending", now, None)
        conn.executemany(
            "INSERT INTO outbox (flip_id, notifier, event, next_attempt, created, state, "
            "held_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(cursor.lastrowid, name, event, due, now, state, held_by) for name in names],
        )
        return bool(names)

    def _hold(self, conn: sqlite3.Connection, check: Check, now: float) -> Hold | None:
        """What silences the check now: its snooze or a [[silence]] window."""
        return holding(check, now, self.silences, _snooze(conn, check.id))

    def _resolve(self, conn: sqlite3.Connection, ref: str) -> Check:
        """A check by UUID or by slug, as people type them on the command line."""
        column = "uuid" if _looks_like_uuid(ref) else "slug"
        rows = conn.execute(f"{SELECT_CHECK} WHERE {column} = ? LIMIT 2", (ref.lower(),))
        found = rows.fetchall()
        if not found:
            raise NotFound(f"no check {ref!r}")
        if len(found) > 1:
            raise Conflict(f"more than one check has the slug {ref!r}; use its UUID")
        return _check(found[0])


def _snooze(conn: sqlite3.Connection, check_id: int) -> Snooze | None:
    row = conn.execute(
        "SELECT check_id, until, reason, created FROM snoozes WHERE check_id = ?", (check_id,)
    ).fetchone()
    return Snooze(*row) if row else None


def _same_key(stored: str, given: str) -> bool:
    """A ping key compared in constant time, so its characters cannot be guessed one by one."""
    return hmac.compare_digest(stored.encode(), given.encode())


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _ensure_ping_key(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('ping_key', ?)",
        (secrets.token_urlsafe(16),),
    )


def _audit_view(check: Check) -> dict[str, Any]:
    """What the audit log keeps of a check: its definition, its UUID and its status."""
    return {
        "uuid": check.uuid, "name": check.name, "slug": check.slug, "tags": check.tags,
        "desc": check.desc, "period": check.period, "cron": check.cron, "tz": check.tz,
        "grace": check.grace, "misses": check.misses, "max_runtime": check.max_runtime,
        "manual_resume": check.manual_resume, "methods": check.methods,
        "failures": check.failures, "recoveries": check.recoveries, "early": check.early,
        "notifiers": list(check.notifiers) if check.notifiers is not None else None,
        "rules": check.rules.as_config(), "status": check.status,
    }  # fmt: skip


def _audit(
    conn: sqlite3.Connection, at: float, actor: str, action: str, target: str,
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
) -> None:  # fmt: skip
    """An audit row; the actor and target (which a client may choose: a user name, an
    address) are cut to MAX_AUDIT_TEXT characters, so no row can fill the disk."""
    conn.execute(
        "INSERT INTO audit (at, actor, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?)",
        (
            at, actor[:MAX_AUDIT_TEXT], action, target[:MAX_AUDIT_TEXT],
            json.dumps(before) if before is not None else None,
            json.dumps(after) if after is not None else None,
        ),
    )  # fmt: skip


# -- backup and restore (issue 6) -----------------------------------------------------------
