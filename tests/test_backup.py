"""`heartbeatd backup` and `restore` (backup.py) on real database files, one of them live."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.store.backup import BackupError, backup, in_use, restore
from heartbeatd.store.migrations import MIGRATIONS
from heartbeatd.web.keys import CONFIG
from tests.conftest import Daemon


def read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_a_backup_taken_while_pings_are_written_is_whole_and_consistent(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon: Daemon = await start_daemon("ping_retention = 100000\n")
    checks = [await daemon.add(f"job-{i}") for i in range(5)]
    stop = asyncio.Event()

    async def pinger(uuid: str) -> None:
        while not stop.is_set():
            response = await daemon.client.post(f"/ping/{uuid}", data=b"output " * 50)
            assert response.status == 200

    pingers = [asyncio.create_task(pinger(check.uuid)) for check in checks]
    try:
        while (await daemon.query("SELECT count(*) FROM pings"))[0][0] < 200:
            await asyncio.sleep(0.01)
        copy = tmp_path / "copy.db"
        facts = await asyncio.to_thread(backup, Path(daemon.app[CONFIG].db), copy)
        after = (await daemon.query("SELECT count(*) FROM pings"))[0][0]
    finally:
        stop.set()
        await asyncio.gather(*pingers)
    assert read(copy, "PRAGMA integrity_check") == [("ok",)]
    assert read(copy, "PRAGMA journal_mode") == [("delete",)]
    assert not (tmp_path / "copy.db-wal").exists()
    (pings,) = read(copy, "SELECT count(*) FROM pings")[0]
    (counted,) = read(copy, "SELECT sum(n_pings) FROM checks")[0]
    assert 200 <= pings <= after
    assert counted == pings  # each ping and its check's counter are in the copy together
    assert (facts.checks, facts.pings) == (5, pings)
    assert read(copy, "PRAGMA user_version") == [(len(MIGRATIONS),)]


def test_backup_and_restore_round_trip_through_the_cli(hb: Any, tmp_path: Path) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    result = hb("backup", "saved.db")
    assert result.exit_code == 0, result.output
    assert result.output == "Backed up heartbeatd.db to saved.db: 1 checks, 0 pings.\n"
    hb("check", "add", "added-after", "--period", "1h")

    result = hb("restore", "saved.db")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Restored heartbeatd.db from saved.db: 1 checks, 0 pings.\n"
        "The previous database is kept as heartbeatd.db.before-restore.\n"
    )
    assert read(tmp_path / "heartbeatd.db", "SELECT slug FROM checks") == [("nightly",)]
    before = tmp_path / "heartbeatd.db.before-restore"
    assert read(before, "SELECT slug FROM checks ORDER BY slug") == [("added-after",), ("nightly",)]
    assert "nightly" in hb("check", "list").output  # the daemon's code opens the restored file


def test_restore_into_an_empty_place_keeps_nothing_before(hb: Any, tmp_path: Path) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    hb("backup", "saved.db")
    result = hb("restore", "saved.db", "--db", "fresh.db")
    assert result.exit_code == 0
    assert "before-restore" not in result.output
    assert read(tmp_path / "fresh.db", "SELECT slug FROM checks") == [("nightly",)]


def test_backup_of_a_missing_database_says_so(hb: Any) -> None:
    result = hb("backup", "saved.db", "--db", "nothing-here.db")
    assert result.exit_code == 1
    assert result.output == "Error: no database at nothing-here.db\n"
    assert not Path("saved.db").exists()


def test_restore_refuses_a_file_that_is_not_a_heartbeatd_database(hb: Any, tmp_path: Path) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    (tmp_path / "notes.txt").write_bytes(b"not a database at all " * 100)
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as conn:
        conn.execute("CREATE TABLE t (x)")
    for name in ("notes.txt", "other.db"):
        result = hb("restore", name)
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: {name} is not a heartbeatd database")
    assert read(tmp_path / "heartbeatd.db", "SELECT slug FROM checks") == [("nightly",)]
    assert not (tmp_path / "heartbeatd.db.before-restore").exists()


def test_restore_refuses_a_newer_schema(hb: Any, tmp_path: Path) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    hb("backup", "saved.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "saved.db")) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    result = hb("restore", "saved.db")
    assert result.exit_code == 1
    assert f"has schema version {len(MIGRATIONS) + 1}, newer than" in result.output
    assert "upgrade heartbeatd first" in result.output


def test_restore_refuses_while_another_process_has_the_database_open(
    hb: Any, tmp_path: Path
) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    hb("backup", "saved.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(tmp_path / "heartbeatd.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        assert in_use(tmp_path / "heartbeatd.db")
        result = hb("restore", "saved.db")
        assert result.exit_code == 1
        assert "heartbeatd.db is in use (is heartbeatd running?)" in result.output
    finally:
        holder.communicate(b"\n", timeout=10)
    assert not in_use(tmp_path / "heartbeatd.db")
    assert hb("restore", "saved.db").exit_code == 0


# Opens the database the way the daemon does (WAL) and keeps it open until told to stop.
HOLD_OPEN = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("SELECT count(*) FROM checks").fetchall()
print("open", flush=True)
sys.stdin.readline()
conn.close()
"""


def test_restore_does_not_replay_the_old_write_ahead_log(tmp_path: Path) -> None:
    """A -wal left by a crashed daemon belongs to the old database: replayed into the restored
    one it would corrupt it. Its content must end up in the .before-restore copy instead."""
    db, saved = tmp_path / "heartbeatd.db", tmp_path / "saved.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE checks (id INTEGER PRIMARY KEY, slug TEXT, n_pings INTEGER);"
            "CREATE TABLE pings (id INTEGER PRIMARY KEY);"
            "INSERT INTO meta VALUES ('ping_key', 'k');"
            "INSERT INTO checks (slug, n_pings) VALUES ('kept', 0);"
        )
    backup(db, saved)
    crashed = subprocess.run([sys.executable, "-c", CRASH_WITH_WAL, str(db)], check=False)
    assert crashed.returncode == 9 and (tmp_path / "heartbeatd.db-wal").exists()

    restore(saved, db)
    assert read(db, "SELECT slug FROM checks") == [("kept",)]
    assert read(db, "PRAGMA integrity_check") == [("ok",)]
    before = tmp_path / "heartbeatd.db.before-restore"
    assert read(before, "SELECT slug FROM checks ORDER BY slug") == [("kept",), ("only-in-wal",)]


# Commits into WAL mode and dies without closing, so the commit sits only in the -wal file.
CRASH_WITH_WAL = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("INSERT INTO checks (slug, n_pings) VALUES ('only-in-wal', 0)")
os._exit(9)
"""


def test_a_failed_copy_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "garbage.db").write_bytes(b"x" * 5000)
    with pytest.raises(BackupError):
        backup(tmp_path / "garbage.db", tmp_path / "copy.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


def test_backup_and_restore_refuse_to_overwrite_the_database_with_itself(
    hb: Any, tmp_path: Path
) -> None:
    hb("check", "add", "nightly", "--period", "1d")
    result = hb("backup", "./heartbeatd.db")
    assert result.output == "Error: heartbeatd.db is the database itself; name another file\n"
    assert hb("restore", "heartbeatd.db").output == "Error: heartbeatd.db is the database itself\n"
    assert read(tmp_path / "heartbeatd.db", "SELECT slug FROM checks") == [("nightly",)]
