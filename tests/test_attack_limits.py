"""Unbounded text and loose files (security issue "Safe to put on the internet").

Hole 7: the API took any amount of tags and description (640 kB of tags were accepted, and the
dashboard then took 5.6-9.7 s to render while pings waited 7.7 s). Now every way in (API, web
form, config file, CLI) holds a check's text to limits.py's bounds, Healthchecks' where it has
them, and a value at the bound is still taken.
Point 10: slug checks used re.match with `$`, which let "abc\\n" through the API, the config
and the CLI; now refused everywhere (the form strips it, and a ping path never matches a
newline), and ?create=1 no longer creates a slug longer than a check may have.
Hole 8: the database, -wal and -shm were 0644 under umask 022, with the ping key and the badge
secret in them; now 0600 whatever the umask, and an existing 0644 database is tightened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core import limits
from heartbeatd.core.config import ConfigError, load_config
from tests.conftest import Daemon
from tests.test_web import PRIVATE, log_in

TOO_MANY_TAGS = " ".join(["tag"] * 160_000)  # 640 kB, as in the report
TAGS_ERROR = "too long (160000 tags, 639999 characters with a space between them; the limit is 500)"
LONG = {"name": "n" * (limits.MAX_NAME + 1), "desc": "d" * (limits.MAX_DESC + 1)}


async def call(daemon: Daemon, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST `body` as JSON with a new read-write key."""
    key, _ = await daemon.store.create_api_key(None, False, daemon.clock.now(), "cli")
    headers = {"X-Api-Key": key}
    response = await daemon.client.post(f"/api/v3/{path}", data=json.dumps(body), headers=headers)
    return response.status, await response.json()


# -- the API ----------------------------------------------------------------------------------


async def test_the_api_refuses_640_kb_of_tags_naming_the_field_and_the_bound(
    daemon: Daemon,
) -> None:
    existing = await daemon.add("backup")
    for path in ("checks/", f"checks/{existing.uuid}"):
        status, answer = await call(daemon, path, {"name": "x", "tags": TOO_MANY_TAGS})
        assert status == 400
        assert answer["error"] == f"json validation error: tags is {TAGS_ERROR}"
    assert [c.tags for c in await daemon.store.list_checks()] == [""]


@pytest.mark.parametrize("field", ["name", "desc"])
async def test_the_api_refuses_a_too_long_name_or_description(daemon: Daemon, field: str) -> None:
    existing = await daemon.add("backup")
    for path in ("checks/", f"checks/{existing.uuid}"):
        status, answer = await call(daemon, path, {field: LONG[field]})
        assert status == 400
        limit = limits.MAX_NAME if field == "name" else limits.MAX_DESC
        assert answer["error"] == (
            f"json validation error: {field} is too long ({limit + 1} characters; "
            f"the limit is {limit})"
        )
    assert len(await daemon.store.list_checks()) == 1


async def test_the_api_still_takes_what_healthchecks_takes(daemon: Daemon) -> None:
    """A guard, not a hole (passes before the change too): values at Healthchecks' bounds, and
    a long desc, go on working."""
    body = {
        "name": "n" * 100,
        "slug": "s" * 100,
        "tags": " ".join(["t" * 9] * 50),
        "desc": "d" * 5000,
        "success_kw": "k" * 200,
        "filter_http_body": True,
        "schedule": "0 3 * * *",
    }
    status, answer = await call(daemon, "checks/", body)
    assert status == 201, answer
    assert {field: answer[field] for field in body} == body


async def test_the_api_refuses_a_slug_with_a_trailing_newline(daemon: Daemon) -> None:
    status, answer = await call(daemon, "checks/", {"name": "x", "slug": "abc\n"})
    assert (status, answer["error"]) == (400, "json validation error: slug does not match pattern")


async def test_a_time_zone_too_long_for_a_file_name_is_a_400_not_a_500(daemon: Daemon) -> None:
    body = {"name": "x", "schedule": "0 3 * * *", "tz": "a" * 300}
    status, answer = await call(daemon, "checks/", body)
    assert (status, answer["error"]) == (400, "json validation error: tz is not a valid timezone")


# -- ping URLs --------------------------------------------------------------------------------


async def test_create_1_never_makes_a_slug_longer_than_the_bound(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    response = await daemon.client.get(f"/ping/{key}/{'s' * (limits.MAX_SLUG + 1)}?create=1")
    assert response.status == 404
    assert await daemon.store.list_checks() == []


async def test_a_slug_longer_than_the_bound_made_before_it_can_still_be_pinged(
    daemon: Daemon,
) -> None:
    old = await daemon.add("old", slug="s" * 150)  # as `check add --slug` could make one
    key = await daemon.store.ping_key()
    response = await daemon.client.get(f"/ping/{key}/{old.slug}")
    assert (response.status, await response.text()) == (200, "OK")


# -- the web form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", LONG["name"], "Too long (101 characters; the limit is 100)."),
        ("desc", LONG["desc"], "Too long (10001 characters; the limit is 10000)."),
        ("tags", TOO_MANY_TAGS, f"T{TAGS_ERROR[1:]}."),
        ("slug", "s" * 101, "Too long (101 characters; the limit is 100)."),
    ],
)
async def test_the_web_form_shows_the_bound_under_the_field(
    start_daemon: Callable[..., Any], field: str, value: str, error: str
) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    form = {"csrf": csrf, "name": "job", "slug": "", "tags": "", "desc": "", "kind": "period",
            "period": "1h", "cron": "", "tz": "UTC", "grace": "1h", field: value}  # fmt: skip
    response = await daemon.client.post("/checks/new", data=form)
    html = await response.text()
    assert response.status == 400
    assert f'<span class="error" id="e-{field}">{error}' in html or (
        field == "desc" and f'<span class="error">{error}' in html
    )
    assert await daemon.store.list_checks() == []


# -- the config file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f'name = "{LONG["name"]}"', "3: name: too long (101 characters; the limit is 100)"),
        (f'desc = "{LONG["desc"]}"', "4: desc: too long (10001 characters; the limit is 10000)"),
        (f'tags = "{TOO_MANY_TAGS}"', f"4: tags: {TAGS_ERROR}"),
        ('slug = "abc\\n"', "4: slug: use lowercase letters, digits, '-' and '_', got 'abc\\n'"),
        (f'success_kw = "{"k" * 201}"', "4: success_kw: too long (201 characters; the limit"),
        (f'cron = "{"0" * 100} 3 * * *"', "3: cron: too long (108 characters; the limit is 100)"),
    ],
)
def test_the_config_file_names_file_line_key_and_bound(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "heartbeatd.toml"
    timing = "" if line.startswith("cron") else 'period = "1h"\n'
    name = "" if line.startswith("name") else 'name = "job"\n'
    path.write_text(f"[[check]]\n{timing}{name}{line}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, {}, {"db": str(tmp_path / "heartbeatd.db")})
    assert str(raised.value).startswith(f"{path}:{expected}")


def test_a_notifier_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text('[[notifier]]\ntype = "log"\nname = "ops\\n"\n')
    with pytest.raises(ConfigError, match=r":3: name: use lowercase letters"):
        load_config(path, {}, {})


def test_the_config_file_still_takes_values_at_the_bound(tmp_path: Path) -> None:
    """A guard, not a hole (passes before the change too): a config at every bound loads."""
    path = tmp_path / "heartbeatd.toml"
    path.write_text(
        f'[[check]]\nperiod = "1h"\nname = "{"n" * 100}"\nslug = "{"s" * 100}"\n'
        f'tags = "{" ".join(["t" * 9] * 50)}"\ndesc = "{"d" * 10_000}"\n'
    )
    (check,) = load_config(path, {}, {}).checks
    assert (len(check.name), len(check.slug), len(" ".join(check.tags))) == (100, 100, 499)


# -- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([LONG["name"]], "Invalid value for 'NAME': too long (101 characters; the limit is 100)"),
        (["job", "--desc", LONG["desc"]], "Invalid value for '--desc': too long (10001"),
        (["job", "--slug", "abc\n"], "Invalid value for '--slug': use lowercase letters"),
        (["job", "--slug", "s" * 101], "Invalid value for '--slug': too long (101 characters"),
        (
            ["job", *[a for i in range(200) for a in ("--tag", f"tag{i}")]],
            "Invalid value for '--tag': too long (200 tags, 1289 characters",
        ),
    ],
)
def test_the_cli_refuses_text_past_the_bound_with_a_sentence(
    hb: Callable[..., Any], args: list[str], message: str
) -> None:
    result = hb("check", "add", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert "No checks yet" in hb("check", "list").output


# -- file modes -------------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask outside the systemd unit, under which new files are 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_a_new_database_its_wal_shm_and_backups_are_private(
    start_daemon: Callable[..., Any], hb: Callable[..., Any], tmp_path: Path
) -> None:
    daemon = await start_daemon()
    await daemon.add("backup")  # a write, so the -wal exists
    db = tmp_path / "heartbeatd.db"
    for path in (db, tmp_path / "heartbeatd.db-wal", tmp_path / "heartbeatd.db-shm"):
        assert mode(path) == 0o600, path
    result = hb("backup", "--db", str(db), "copy.db")
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "copy.db") == 0o600


@pytest.mark.usefixtures("umask_022")
async def test_an_existing_world_readable_database_is_made_private_at_start(
    start_daemon: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "heartbeatd.db"
    sqlite3.connect(db).close()
    db.chmod(0o644)
    daemon = await start_daemon()
    await daemon.add("backup")
    assert mode(db) == mode(tmp_path / "heartbeatd.db-wal") == 0o600
    assert f"{db} was open to group or others (mode 644); made it 600" in caplog.text
