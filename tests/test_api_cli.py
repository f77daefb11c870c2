"""`heartbeatd apikey` and `heartbeatd audit`, run as a user would, on a real database file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.store.migrations import MIGRATIONS
from tests.conftest import Invoke


def test_apikey_create_prints_the_key_once_and_list_never_shows_it(hb: Invoke) -> None:
    created = hb("apikey", "create", "--name", "ci")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert len(key) == 32 and key.startswith("hcw_")
    assert "cannot be shown again" in created.stderr
    reader = hb("apikey", "create", "--read-only").stdout.strip()
    assert reader.startswith("hcr_") and reader != key
    listed = hb("apikey", "list")
    assert "ci" in listed.output and "read-write" in listed.output
    assert "key2" in listed.output and "read-only" in listed.output
    assert key not in listed.output and reader not in listed.output
    rows = json.loads(hb("apikey", "list", "--json").output)
    assert [(r["name"], r["read_only"], r["last_used"]) for r in rows] == [
        ("ci", False, None),
        ("key2", True, None),
    ]
    assert all(key[4:] not in json.dumps(r) for r in rows)


def test_apikey_names_are_unique_among_live_keys(hb: Invoke) -> None:
    hb("apikey", "create", "--name", "ci")
    duplicate = CliRunner().invoke(cli, ["apikey", "create", "--name", "ci"])
    assert duplicate.exit_code == 1
    assert "an API key named 'ci' exists" in duplicate.output
    assert hb("apikey", "revoke", "ci").output == "Revoked API key 'ci'.\n"
    assert hb("apikey", "create", "--name", "ci").exit_code == 0
    assert CliRunner().invoke(cli, ["apikey", "revoke", "nope"]).exit_code == 1


async def test_a_cli_key_works_against_the_daemon_until_revoked(
    hb: Invoke, start_daemon: Callable[..., Any]
) -> None:
    daemon = await start_daemon()
    key = (await asyncio.to_thread(hb, "apikey", "create", "--name", "ci")).stdout.strip()
    response = await daemon.client.get("/api/v3/checks/", headers={"X-Api-Key": key})
    assert response.status == 200
    assert await response.json() == {"checks": []}
    listed = await asyncio.to_thread(hb, "apikey", "list", "--json")
    assert json.loads(listed.output)[0]["last_used"] is not None
    await asyncio.to_thread(hb, "apikey", "revoke", "1")
    response = await daemon.client.get("/api/v3/checks/", headers={"X-Api-Key": key})
    assert response.status == 401


def test_audit_lists_cli_changes_newest_first(hb: Invoke) -> None:
    assert hb("audit").output == "no changes recorded yet\n"
    hb("check", "add", "Backups", "--period", "5m")
    hb("check", "pause", "backups")
    hb("check", "resume", "backups")
    hb("check", "rotate", "backups")
    hb("check", "remove", "backups")
    hb("apikey", "create", "--name", "ci")
    hb("apikey", "revoke", "ci")
    lines = hb("audit").output.splitlines()
    actions = [line.split()[1:3] for line in lines]
    assert actions == [
        ["cli", "apikey.revoke"],
        ["cli", "apikey.create"],
        ["cli", "check.delete"],
        ["cli", "check.rotate"],
        ["cli", "check.resume"],
        ["cli", "check.pause"],
        ["cli", "check.create"],
    ]
    assert "'Backups'" in lines[5] and "status 'new' -> 'paused'" in lines[5]
    rows = json.loads(hb("audit", "--json", "--limit", "2").output)
    assert [r["action"] for r in rows] == ["apikey.revoke", "apikey.create"]
    rotate = json.loads(hb("audit", "--json").output)[3]
    assert rotate["before"]["uuid"] != rotate["after"]["uuid"]
    assert rotate["at"].endswith("+00:00")


def test_a_database_from_before_api_keys_is_upgraded_in_place(hb: Invoke) -> None:
    """Steps 1-2 only (the schema before this feature), with a check in it."""
    conn = sqlite3.connect("heartbeatd.db", isolation_level=None)
    for step in MIGRATIONS[:2]:
        conn.executescript(step)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO checks (uuid, name, period, grace, created) "
        "VALUES ('6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10', 'old', 60, 10, 0)"
    )
    conn.close()
    assert hb("apikey", "create", "--name", "ci").exit_code == 0
    assert "old" in hb("check", "list").output
    assert json.loads(hb("apikey", "list", "--json").output)[0]["name"] == "ci"
