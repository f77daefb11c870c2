"""All of heartbeatd's SQL: checks, pings, flips and the notification outbox.

The store layer: it imports core and its own modules (writer, migrations, apikeys, retention,
backup), never notify, watch, web, daemon or cli.

Writes go through the group-commit Writer (writer.py) as functions run in its batches, where the
rules of model.py are applied to the row just read, so a ping, the flip it causes and that flip's
outbox rows are one transaction. Reads that need no write lock use an aiosqlite connection.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import aiosqlite

from heartbeatd.core import model, rules
from heartbeatd.core.errors import Conflict, NotFound, Unavailable
from heartbeatd.core.model import UNIQUE_KEY_LENGTH, Check, CheckDefinition, Flip, unique_key
from heartbeatd.core.rules import assertions
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.core.rules.body import BodyRules
from heartbeatd.store import apikeys
from heartbeatd.store.migrations import migrate
from heartbeatd.store.writer import Writer, connect

CHECK_COLUMNS = (
    "id, uuid, name, slug, tags, description, period, cron, tz, grace, misses, max_runtime, "
    "manual_resume, methods, notifiers, managed, created, status, last_ping, last_start, "
    "last_start_rid, last_duration, n_pings, alert_after, rules"
)
SELECT_CHECK = f"SELECT {CHECK_COLUMNS} FROM checks"
RULES_AT = [c.strip() for c in CHECK_COLUMNS.split(",")].index("rules")
SAVE_STATE = (
    "UPDATE checks SET status = ?, last_ping = ?, last_start = ?, last_start_rid = ?, "
    "last_duration = ?, n_pings = ?, alert_after = ? WHERE id = ?"
)
INSERT_PING = (
    "INSERT INTO pings (check_id, n, created, kind, exit_status, rid, duration, scheme, method, "
    "remote_addr, ua, body, body_size, metrics, notes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
DEFINITION_COLUMNS = (
    "name, slug, tags, description, period, cron, tz, grace, misses, max_runtime, "
    "manual_resume, methods, notifiers, rules"
)
# Auto-provisioned checks (?create=1) get Healthchecks' defaults: a day's period, an hour's grace.
AUTO_PERIOD, AUTO_GRACE = 86400.0, 3600.0

Router = Callable[[Check, str], Sequence[str]]  # (check, event) -> notifier names
T = TypeVar("T")
NEXT_PENDING = "SELECT min(next_attempt) FROM outbox WHERE state = 'pending'"
# A due outbox row with what its message needs: the check, the flip, the last ping's body and
# exit status, when the outage began (for up), and whether the flip is still the latest.
DUE_SQL = (
    "SELECT o.id, o.notifier, o.event, o.attempts, f.at, f.old_status, f.new_status, "
    "f.reason, f.detail, p.body, p.exit_status, "
    "CASE WHEN f.new_status = 'up' THEN (SELECT max(d.at) FROM flips d WHERE "
    "d.check_id = c.id AND d.new_status = 'down' AND d.at <= f.at) END, o.flip_id, "
    "o.created, (SELECT max(l.id) FROM flips l WHERE l.check_id = c.id) = f.id, "
    "p.metrics, p.duration, "
    f"{', '.join('c.' + c.strip() for c in CHECK_COLUMNS.split(','))} "
    "FROM outbox o JOIN flips f ON f.id = o.flip_id JOIN checks c ON c.id = f.check_id "
    "LEFT JOIN pings p ON p.check_id = c.id AND p.n = c.n_pings "  # the newest ping
    "WHERE o.state = 'pending' AND o.next_attempt <= ? AND o.notifier = ?"
)
DUE_ORDER = "ORDER BY o.next_attempt LIMIT ?"
FULL_SWEEP = 60.0  # seconds between sweeps of every pending row for gone notifiers
PROBE_EVERY = 1.0  # seconds: how stale status/ may trust the last commit to be (healthy)
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
    "outbox": ("created", "AND state != 'pending'"),
    "flips": (
        "at",
        "AND EXISTS (SELECT 1 FROM flips n WHERE n.check_id = flips.check_id "
        "AND n.at > flips.at AND n.at < :cutoff) AND NOT EXISTS (SELECT 1 FROM outbox o "
        "WHERE o.flip_id = flips.id AND o.state = 'pending')",
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


@dataclass(frozen=True, slots=True)
class PingIn:
    action: str  # success, start, fail, log
    exit_status: int | None
    rid: str | None
    method: str
    scheme: str
    remote_addr: str
    ua: str
    body: bytes
    body_size: int
    duration: float | None = None  # the run's length as the client measured it (ingress.py)
    metrics: tuple[tuple[str, float], ...] = ()  # (name, value) from the query (ping_metrics.py)
    notes: tuple[str, ...] = ()  # what was ignored in reading them
    json_body: bool = False  # Content-Type: application/json: json_metrics may be read from it


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
class BodyDecision:
    """What a check's body rules made of a ping's body, and the rules that decided it."""

    rules: BodyRules
    decided: tuple[str, str]  # BodyRules.decide's (action, why)


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


def _outbox_item(row: Sequence[Any]) -> OutboxItem:
    metrics = json.loads(row[15]) if row[15] else {}
    if row[16] is not None:
        metrics.setdefault("duration", row[16])
    return OutboxItem(
        row[0], row[1], row[2], row[3], Flip(*row[4:9]), _check(row[17:]), bytes(row[9] or b""),
        row[10], row[11], row[12], row[13], bool(row[14]), metrics,
    )  # fmt: skip


def _check(row: Sequence[Any]) -> Check:
    values = list(row)
    values[12] = bool(values[12])
    values[14] = tuple(json.loads(values[14])) if values[14] is not None else None
    values[15] = bool(values[15])
    values[RULES_AT] = rules.from_json(values[RULES_AT])
    return Check(*values)


def _definition_values(d: CheckDefinition) -> tuple[Any, ...]:
    notifiers = json.dumps(list(d.notifiers)) if d.notifiers is not None else None
    return (
        d.name, d.slug, " ".join(d.tags), d.desc, d.period, d.cron, d.tz, d.grace, d.misses,
        d.max_runtime, int(d.manual_resume), d.methods, notifiers, d.rules.to_json(),
    )  # fmt: skip


def _looks_like_uuid(ref: str) -> bool:
    try:
        return str(uuid.UUID(ref)) == ref.lower()
    except ValueError:
        return False


class Store:
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

    async def __aenter__(self) -> Store:
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
            decided = await loop.run_in_executor(self._searcher, result.decide, ping.body)
            decision = BodyDecision(result, decided)

    def _record_ping(
        self,
        conn: sqlite3.Connection,
        target: ByUuid | BySlug,
        ping: PingIn,
        now: float,
        decision: BodyDecision | None,
    ) -> PingResult | BodyRules:
        """The ping written, or, before anything is written, the body rules record_ping must
        decide first: those of the check, when they search and `decision` is not theirs."""
        created = False
        if isinstance(target, ByUuid):
            check = self._check_by_uuid(conn, target.uuid)
        else:
            found = self._find_by_slug(conn, target)
            if found is None:
                if not target.create:
                    raise NotFound()
                definition = CheckDefinition(
                    name=target.slug, slug=target.slug, period=AUTO_PERIOD, grace=AUTO_GRACE
                )
                found = self._insert_check(conn, definition, now, managed=False)
                created = True
            check = self._cache[found.uuid] = found
        kind = model.effective_action(check, ping.action, ping.method)
        detail = f"exit status {ping.exit_status}" if ping.exit_status else ""
        reason, metrics, notes = "", dict(ping.metrics), ping.notes
        if check.rules and kind != "ign":
            body = check.rules.body
            decided = decision.decided if decision is not None and decision.rules == body else None
            if decided is None and body is not None:
                if body.searches:
                    return body
                decided = body.decide(ping.body)
            verdict, metrics, notes = self._judge(conn, check, kind, ping, now, decided)
            kind, reason, detail = verdict.action, verdict.reason, verdict.detail or detail
        flip = model.apply_ping(check, kind, ping.rid, now, detail, reason)
        if kind in ("success", "fail") and check.last_duration is None:
            check.last_duration = ping.duration  # no start ping paired it; the client's own timing
        closed_run = kind in ("success", "fail") and check.last_duration is not None
        conn.execute(
            INSERT_PING,
            (
                check.id, check.n_pings, now, kind, ping.exit_status, ping.rid,
                check.last_duration if closed_run else None, ping.scheme, ping.method,
                ping.remote_addr, ping.ua, ping.body or None, ping.body_size,
                json.dumps(metrics) if metrics else None, json.dumps(notes) if notes else None,
            ),
        )  # fmt: skip
        if metrics:
            _keep_last_metrics(conn, check.id, metrics)
        self._save_state(conn, check)
        if check.n_pings > self.retention:
            conn.execute(
                "DELETE FROM pings WHERE check_id = ? AND n <= ?",
                (check.id, check.n_pings - self.retention),
            )
        notify = flip is not None and self._write_flip(conn, check, flip, now)
        return PingResult(check.id, check.alert_after, created, notify, model.late_at(check))

    def _judge(
        self,
        conn: sqlite3.Connection,
        check: Check,
        kind: str,
        ping: PingIn,
        now: float,
        decided: tuple[str, str] | None,
    ) -> tuple[rules.Verdict, dict[str, float], tuple[str, ...]]:
        """The check's rules applied to a ping: the verdict, and the metrics and notes to store.

        The run's duration (from its start ping, else the client's timing) is the metric
        `duration` unless the ping reported one itself; it is stored in the duration column.
        """
        metrics, notes = dict(ping.metrics), ping.notes
        if check.rules.json_metrics and ping.json_body:
            found, more = ping_metrics.from_json(ping.body, check.rules.json_metrics)
            metrics = {**found, **metrics}
            notes += tuple(more)
        measured = dict(metrics)
        duration = model.run_duration(check, ping.rid, now)
        if duration is None:
            duration = ping.duration
        if duration is not None:
            measured.setdefault("duration", duration)
        verdict = rules.judge(
            check.rules, kind, decided, measured, lambda name: _history(conn, check.id, name)
        )
        return verdict, metrics, notes + ((verdict.note,) if verdict.note else ())

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
                check.last_duration, check.n_pings, check.alert_after, check.id,
            ),
        )  # fmt: skip

    def _write_flip(self, conn: sqlite3.Connection, check: Check, flip: Flip, now: float) -> bool:
        """The flip and, in the same transaction, one outbox row per notifier to tell."""
        cursor = conn.execute(
            "INSERT INTO flips (check_id, at, noticed, old_status, new_status, reason, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (check.id, flip.at, now, flip.old, flip.new, flip.reason, flip.detail),
        )
        if not flip.notifies:
            return False
        event = "down" if flip.new == model.Status.DOWN else "up"
        names = self.router(check, event)
        conn.executemany(
            "INSERT INTO outbox (flip_id, notifier, event, next_attempt, created) "
            "VALUES (?, ?, ?, ?, ?)",
            [(cursor.lastrowid, name, event, now, now) for name in names],
        )
        return bool(names)

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
            for check_id, expected in due:
                row = conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check_id,)).fetchone()
                if row is None:
                    continue
                check = _check(row)
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
            for check_id, expected in due:
                row = conn.execute(f"{SELECT_CHECK} WHERE id = ?", (check_id,)).fetchone()
                if row is None:
                    continue
                check = _check(row)
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

    # -- definitions ---------------------------------------------------------------------

    async def add_check(
        self, definition: CheckDefinition, now: float, actor: str | None = None
    ) -> Check:
        def run(conn: sqlite3.Connection) -> Check:
            check = self._insert_check(conn, definition, now, managed=False)
            if actor is not None:
                _audit(conn, now, actor, "check.create", check.uuid, None, _audit_view(check))
            return check

        return await self._write(run)

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

    # -- instance settings ---------------------------------------------------------------

    async def ping_key(self) -> str:
        async with self._reader.execute("SELECT value FROM meta WHERE key = 'ping_key'") as cur:
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def rotate_ping_key(self) -> str:
        key = secrets.token_urlsafe(16)
        await self._write(
            lambda conn: conn.execute("UPDATE meta SET value = ? WHERE key = 'ping_key'", (key,))
        )
        return key

    # -- reads ---------------------------------------------------------------------------

    async def get_check(self, ref: str) -> Check:
        return await self._write(lambda conn: self._resolve(conn, ref))

    async def list_checks(self) -> list[Check]:
        async with self._reader.execute(f"{SELECT_CHECK} ORDER BY name, id") as cur:
            return [_check(row) async for row in cur]

    async def armed(self) -> list[tuple[int, float, float]]:
        """(id, alert_after, grace) of every check with a going-down moment, for the wheel."""
        async with self._reader.execute(
            "SELECT id, alert_after, grace FROM checks WHERE alert_after IS NOT NULL"
        ) as cur:
            return [(row[0], row[1], row[2]) async for row in cur]

    async def pings(self, check_id: int, limit: int = 100) -> list[PingRecord]:
        """Newest first, as the pings API lists them."""
        sql = (
            "SELECT n, created, kind, exit_status, rid, duration, scheme, method, remote_addr, "
            "ua, body, body_size, metrics, notes FROM pings WHERE check_id = ? "
            "ORDER BY n DESC LIMIT ?"
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

    # -- outbox --------------------------------------------------------------------------

    async def due_notifications(
        self, now: float, room: Mapping[str, tuple[int, Collection[int]]]
    ) -> tuple[list[OutboxItem], float | None, int]:
        """Notifications to start now, with what their messages need, when the earliest
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

    # -- web UI ---------------------------------------------------------------------------

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
        return [{"name": r[0], "role": r[1], "created": r[2], "password": bool(r[3])} for r in rows]

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
        return (row[0], row[1]) if row else None

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
        return (row[0], row[1], row[2]) if row else None

    async def end_session(self, token_hash: str) -> None:
        await self._writer.run(  # no check changes: the ping cache stays valid
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        )

    # -- metrics (issue 6) ---------------------------------------------------------------

    async def outbox_depth(self) -> int:
        """Notifications waiting to be delivered (pending, including those being retried)."""
        async with self._reader.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- API keys and audit log ----------------------------------------------------------

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
            conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (now, row[0]))
            before = {"id": row[0], "name": row[1], "read_only": bool(row[2])}
            _audit(conn, now, actor, "apikey.revoke", row[1], before, None)
            return str(row[1])

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
        if row is None or not hmac.compare_digest(row[2], wanted):
            return None
        if row[4] is None or now - row[4] >= 60:
            await self._writer.run(
                lambda conn: conn.execute(
                    "UPDATE api_keys SET last_used = ? WHERE id = ?", (now, row[0])
                )
            )
        return ApiKey(row[0], row[1], bool(row[3]))

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
            failures = json.loads(row[1] or "{}").get("failures", 1) + 1
            conn.execute(
                "UPDATE audit SET after = ? WHERE id = ?",
                (json.dumps({"failures": failures}), row[0]),
            )

        await self._writer.run(run)  # no check changes: the ping cache stays valid

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

    # -- ping metrics (issue 8) ------------------------------------------------------------

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

    # -- self-monitoring: heartbeatd's own downtime (issue 6, selfmon.py) -----------------

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


def _same_key(stored: str, given: str) -> bool:
    """A ping key compared in constant time, so its characters cannot be guessed one by one."""
    return hmac.compare_digest(stored.encode(), given.encode())


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


MAX_TRACKED_METRICS = 64  # metric names whose latest value a check keeps (4 pings' worth)


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


def _ping_record(row: Sequence[Any]) -> PingRecord:
    """A row of Store.pings' SELECT, its columns in that order."""
    (n, created, kind, exit_status, rid, duration, scheme, method, remote_addr, ua, body,
     body_size, metrics, notes) = row  # fmt: skip
    return PingRecord(
        n=n, created=created, kind=kind, exit_status=exit_status, rid=rid, duration=duration,
        scheme=scheme, method=method, remote_addr=remote_addr, ua=ua, body=body,
        body_size=body_size, metrics=json.loads(metrics) if metrics else {},
        notes=json.loads(notes) if notes else [],
    )  # fmt: skip


def _ensure_ping_key(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('ping_key', ?)",
        (secrets.token_urlsafe(16),),
    )


def _free_key_name(conn: sqlite3.Connection) -> str:
    """`key1`, `key2`, ...: the first such name no live key has."""
    (count,) = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    number = count + 1
    while conn.execute(
        "SELECT 1 FROM api_keys WHERE name = ? AND revoked IS NULL", (f"key{number}",)
    ).fetchone():
        number += 1
    return f"key{number}"


def _audit_view(check: Check) -> dict[str, Any]:
    """What the audit log keeps of a check: its definition, its UUID and its status."""
    return {
        "uuid": check.uuid, "name": check.name, "slug": check.slug, "tags": check.tags,
        "desc": check.desc, "period": check.period, "cron": check.cron, "tz": check.tz,
        "grace": check.grace, "misses": check.misses, "max_runtime": check.max_runtime,
        "manual_resume": check.manual_resume, "methods": check.methods,
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
