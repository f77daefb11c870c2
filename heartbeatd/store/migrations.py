"""The schema, as numbered steps; `PRAGMA user_version` records how many have been applied.

Each step runs in one transaction together with its version bump, so a failed upgrade leaves
the previous version intact. Append new steps; never edit an applied one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: checks, pings, flips, the notification outbox, and instance settings
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        slug TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        period REAL,
        cron TEXT,
        tz TEXT NOT NULL DEFAULT 'UTC',
        grace REAL NOT NULL,
        misses INTEGER NOT NULL DEFAULT 1,
        max_runtime REAL,
        manual_resume INTEGER NOT NULL DEFAULT 0,
        methods TEXT NOT NULL DEFAULT '',
        notifiers TEXT,            -- JSON list of notifier names; NULL: the default notifiers
        managed INTEGER NOT NULL DEFAULT 0,  -- declared in the config file
        created REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',
        last_ping REAL,
        last_start REAL,
        last_start_rid TEXT,
        last_duration REAL,
        n_pings INTEGER NOT NULL DEFAULT 0,
        alert_after REAL,
        CHECK (period IS NOT NULL OR cron IS NOT NULL)
    );
    CREATE INDEX checks_slug ON checks (slug);
    CREATE INDEX checks_armed ON checks (alert_after) WHERE alert_after IS NOT NULL;
    CREATE TABLE pings (
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        created REAL NOT NULL,
        kind TEXT NOT NULL,        -- success, start, fail, log, ign
        exit_status INTEGER,
        rid TEXT,
        duration REAL,             -- set when this ping closed a started run
        scheme TEXT NOT NULL,
        method TEXT NOT NULL,
        remote_addr TEXT NOT NULL,
        ua TEXT NOT NULL,
        body BLOB,                 -- raw bytes, at most ping_body_limit of them
        body_size INTEGER NOT NULL -- bytes the client sent
    );
    CREATE INDEX pings_check_n ON pings (check_id, n);
    CREATE TABLE flips (
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
        at REAL NOT NULL,          -- when it became true (the deadline for a timeout)
        noticed REAL NOT NULL,     -- when heartbeatd wrote it
        old_status TEXT NOT NULL,
        new_status TEXT NOT NULL,
        reason TEXT NOT NULL,      -- timeout, fail, ping, pause, resume
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX flips_check_at ON flips (check_id, at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        flip_id INTEGER NOT NULL REFERENCES flips (id) ON DELETE CASCADE,
        notifier TEXT NOT NULL,
        event TEXT NOT NULL,       -- down, up
        state TEXT NOT NULL DEFAULT 'pending',  -- pending, sent, failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at REAL
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt) WHERE state = 'pending';
    CREATE INDEX outbox_flip ON outbox (flip_id);
    """,
    # 2: when each outbox row was written, so retries can stop a fixed time after it; rows
    # may now also be 'cancelled' (a reminder whose outage ended) and of event 'repeat'
    """
    ALTER TABLE outbox ADD COLUMN created REAL NOT NULL DEFAULT 0;
    UPDATE outbox SET created = next_attempt;
    """,
    # 3: management API keys (only their sha256 is kept) and the audit log of changes
    """
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,  -- hex sha256 of the key
        read_only INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,       -- "cli", "api:<key name>", a user name
        action TEXT NOT NULL,      -- check.create, check.update, apikey.revoke, login.fail, ...
        target TEXT NOT NULL DEFAULT '',
        before TEXT,               -- JSON, NULL when nothing existed
        after TEXT                 -- JSON, NULL when nothing remains
    );
    CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked IS NULL;
    CREATE INDEX audit_at ON audit (at);
    """,
    # 4: web UI logins: users with scrypt password hashes, and sessions (only the sha256 of
    # the cookie's token is kept, so a copy of the database cannot be used to log in); an
    # index for the dashboard's run strips
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password TEXT NOT NULL,    -- scrypt$n$r$p$salt$hash (base64)
        created REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,  -- hex sha256 of the cookie's token
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    -- the dashboard's strip of each check's last runs, read from the index alone
    CREATE INDEX pings_runs ON pings (check_id, n, kind) WHERE kind IN ('success', 'fail');
    """,
    # 5: did the job do its job: the numbers a ping carried and what was made of them, and
    # each check's rules (assertions, JSON metric fields, body keywords) as its config wrote them
    """
    ALTER TABLE pings ADD COLUMN metrics TEXT;  -- JSON object {"bytes": 0, ...}; NULL: none
    ALTER TABLE pings ADD COLUMN notes TEXT;    -- JSON list: values ignored, rules that decided
    ALTER TABLE checks ADD COLUMN rules TEXT;   -- JSON of the [[check]] rule keys; NULL: none
    """,
    # 6: the latest value of each ping metric per check, kept as pings arrive, so a /metrics
    # scrape reads one small table instead of every retained ping's JSON
    """
    CREATE TABLE metric_last (
        check_id INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value NUMERIC NOT NULL,  -- as the ping gave it: a count stays an integer
        PRIMARY KEY (check_id, name)
    ) WITHOUT ROWID;
    INSERT INTO metric_last (check_id, name, value)
    SELECT check_id, key, value FROM (
        SELECT p.check_id, j.key, j.value,
               row_number() OVER (PARTITION BY p.check_id, j.key ORDER BY p.n DESC) AS newest
        FROM pings p, json_each(p.metrics) j WHERE p.metrics IS NOT NULL
    ) WHERE newest = 1;
    """,
    # 7: one index on pings instead of two. Every ping inserts into each index, at a page that
    # differs per check, so each index cost the ping path a page written per ping; with `kind`
    # as its last column the one index still answers the dashboard's run strips by itself
    """
    DROP INDEX pings_runs;
    DROP INDEX pings_check_n;
    CREATE INDEX pings_check_n_kind ON pings (check_id, n, kind);
    """,
    # 8: roles: an admin changes things, a viewer only reads (and never sees ping URLs); users
    # made before roles existed were all admins
    """
    ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';  -- admin | viewer
    """,
    # 9: silences (issue 21). Snoozes: at most one per check, so a sender of snooze URLs
    # cannot grow the table past the checks. Outbox rows may now be 'held' while a silence
    # lasts (next_attempt: when it ends, to look again), and keep the name that held them
    """
    CREATE TABLE snoozes (
        check_id INTEGER PRIMARY KEY REFERENCES checks (id) ON DELETE CASCADE,
        until REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL
    );
    ALTER TABLE outbox ADD COLUMN held_by TEXT;  -- the silence that held it; NULL: none
    CREATE INDEX outbox_held ON outbox (next_attempt) WHERE state = 'held';
    """,
    # 10: thresholds that count runs (failures, recoveries), a cron slot's early tolerance, and
    # the counts so far; 1, 1 and 0 are what every check did before
    """
    ALTER TABLE checks ADD COLUMN failures INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE checks ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE checks ADD COLUMN early REAL NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN ok_streak INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN streak_at REAL;
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the steps this database lacks; return the resulting version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this heartbeatd knows "
            f"({len(MIGRATIONS)}); upgrade heartbeatd"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(step):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a step into statements (executescript would commit behind our back)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]
