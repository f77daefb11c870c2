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
