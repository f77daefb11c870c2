"""Upgrading the schema (heartbeatd/store/migrations.py): a database made by any older heartbeatd
opens in this one with all its rows; a newer one is refused; a step that fails leaves the
database at the version before it.

An old database is made here by running the steps of its time on a real SQLite file and
filling in what heartbeatd of that version wrote; the upgraded one is then read through the
Store, as the daemon reads it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from heartbeatd.store import Store, apikeys
from heartbeatd.store.migrations import MIGRATIONS, migrate
from tests.conftest import Invoke

NEWEST = len(MIGRATIONS)
T0 = 1_800_000_000.0
UUID = "5f0c6a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"
API_KEY = "hbk_0123456789abcdef0123456789abcdef"
# The step after which each table or column exists.
OUTBOX_CREATED, API_KEYS, USERS, PING_METRICS, METRIC_LAST, ROLES = 2, 3, 4, 5, 6, 8


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A database as heartbeatd at schema `version` left it: one check that was pinged with
    a body and went down, its pending alert, and the keys, users and metrics of that time."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for step in MIGRATIONS[:version]:
        conn.executescript(step)
    conn.execute(f"PRAGMA user_version = {version}")
    if version == 0:
        return conn
    conn.execute(
        "INSERT INTO checks (id, uuid, name, slug, period, grace, created, status, last_ping, "
        "n_pings) VALUES (1, ?, 'Backup', 'backup', 3600, 600, ?, 'down', ?, 1)",
        (UUID, T0 - 86400, T0),
    )
    conn.execute(
        "INSERT INTO pings (check_id, n, created, kind, scheme, method, remote_addr, ua, body, "
        "body_size) VALUES (1, 1, ?, 'fail', 'http', 'POST', '127.0.0.1', 'curl', ?, 9)",
        (T0, b"pg_dump 1"),
    )
    conn.execute(
        "INSERT INTO flips (id, check_id, at, noticed, old_status, new_status, reason) "
        "VALUES (1, 1, ?, ?, 'up', 'down', 'fail')",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO outbox (flip_id, notifier, event, next_attempt) VALUES (1, 'hook', 'down', ?)",
        (T0 + 5,),
    )
    if version >= OUTBOX_CREATED:
        conn.execute("UPDATE outbox SET created = ?", (T0,))
    if version >= API_KEYS:
        conn.execute(
            "INSERT INTO api_keys (name, hash, created) VALUES ('ops', ?, ?)",
            (apikeys.digest(API_KEY), T0),
        )
    if version >= USERS:
        conn.execute("INSERT INTO users (id, name, password, created) VALUES (1, 'alice', ?, ?)",
                     ("scrypt$16384$8$1$c2FsdA$aGFzaA", T0))  # fmt: skip
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created, expires) "
            "VALUES ('tok', 1, 'csrf', ?, ?)",
            (T0, T0 + 86400),
        )
    if version >= PING_METRICS:
        conn.execute("UPDATE pings SET metrics = ?", (json.dumps({"bytes": 42}),))
    if version >= METRIC_LAST:
        conn.execute("INSERT INTO metric_last VALUES (1, 'bytes', 42)")
    return conn


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


@pytest.mark.parametrize("version", range(1, NEWEST))
async def test_a_database_of_any_older_version_opens_with_all_its_rows(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "heartbeatd.db"
    database_at(path, version).close()
    async with Store(path) as store:
        check = await store.get_check("backup")
        assert (check.uuid, check.status, check.n_pings) == (UUID, "down", 1)
        assert await store.ping_body(check.id, 1) == b"pg_dump 1"
        (flip,) = await store.flips(check.id)
        assert (flip["old_status"], flip["new_status"]) == ("up", "down")
        # the pending alert is still delivered, and its retries still end in time
        (item,), _, _ = await store.due_notifications(T0 + 5, {"hook": (1, ())})
        assert (item.event, item.check.uuid) == ("down", UUID)
        assert item.created == (T0 if version >= OUTBOX_CREATED else T0 + 5)
        if version >= API_KEYS:
            key = await store.authenticate(API_KEY, T0)
            assert key is not None and key.name == "ops" and not key.read_only
        if version >= USERS:
            # users made before roles existed were all admins, and stay logged in
            assert await store.session("tok", T0 + 1) == ("alice", "csrf", "admin")
        if version >= PING_METRICS:
            # the /metrics table is filled from the pings' own numbers
            assert await store.last_metrics() == {check.id: {"bytes": 42}}
            assert (await store.pings(check.id))[0]["metrics"] == {"bytes": 42}
    assert version_of(path) == NEWEST


async def test_a_new_database_gets_every_step(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.db"
    async with Store(path) as store:
        assert await store.list_checks() == [] and await store.users() == []
    assert version_of(path) == NEWEST


def test_a_database_newer_than_this_heartbeatd_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.db"
    conn = database_at(path, NEWEST)
    conn.execute(f"PRAGMA user_version = {NEWEST + 1}")
    with pytest.raises(RuntimeError) as refused:
        migrate(conn)
    assert str(refused.value) == (
        f"database schema version {NEWEST + 1} is newer than this heartbeatd knows "
        f"({NEWEST}); upgrade heartbeatd"
    )
    conn.close()
    assert version_of(path) == NEWEST + 1


def test_the_cli_refuses_a_newer_database_in_one_sentence(tmp_path: Path, hb: Invoke) -> None:
    """It printed a RuntimeError's traceback (a file that is no database got one sentence)."""
    conn = database_at(tmp_path / "heartbeatd.db", NEWEST)
    conn.execute(f"PRAGMA user_version = {NEWEST + 1}")
    conn.close()
    result = hb("check", "list")
    assert result.exit_code == 1
    assert result.output == (
        "Error: cannot open database heartbeatd.db: database schema version "
        f"{NEWEST + 1} is newer than this heartbeatd knows ({NEWEST}); upgrade heartbeatd\n"
    )


def test_migrating_an_up_to_date_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.db"
    conn = database_at(path, 1)
    assert migrate(conn) == NEWEST
    schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    changes = conn.total_changes
    assert migrate(conn) == NEWEST
    assert conn.total_changes == changes  # no step ran again
    assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema
    )
    assert conn.execute("SELECT count(*) FROM checks").fetchone() == (1,)


def test_a_step_that_fails_leaves_the_database_at_the_version_before_it(tmp_path: Path) -> None:
    """Step 7 drops two indexes and then creates one; if the create fails, the drops are
    undone too: the step and its version bump are one transaction."""
    path = tmp_path / "heartbeatd.db"
    conn = database_at(path, 6)
    conn.execute("CREATE INDEX pings_check_n_kind ON pings (kind)")  # in step 7's way
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone() == (6,)
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"pings_runs", "pings_check_n"} <= indexes
    assert not conn.in_transaction
    conn.execute("DROP INDEX pings_check_n_kind")  # out of the way: the upgrade goes on
    assert migrate(conn) == NEWEST
