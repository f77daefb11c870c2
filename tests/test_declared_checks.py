"""Client-declared checks (issue 20): a `?create=1` slug ping may carry its check's definition
(`period` or `cron`, `tz`, `grace`, `max_runtime`, `misses`), so a job's first run sets up its
own monitoring and a changed schedule follows the job. Only with the ping key; a check from the
config file is never redefined by a ping (409, nothing recorded)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Daemon

DEFINITION = "SELECT period, cron, tz, grace, max_runtime, misses FROM checks WHERE slug = ?"


async def test_a_first_ping_sets_up_its_check_and_a_later_one_changes_it(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    query = "create=1&cron=0+3+*+*+*&tz=Europe/Berlin&grace=10m&max_runtime=2h&misses=2"
    first = await daemon.client.get(f"/ping/{key}/nightly?{query}")
    assert (first.status, await first.text()) == (201, "Created")
    assert await daemon.query(DEFINITION, "nightly") == [
        (None, "0 3 * * *", "Europe/Berlin", 600.0, 7200.0, 2)
    ]
    (metrics,) = await daemon.query("SELECT metrics FROM pings")
    assert metrics == (None,)  # the definition is not taken for the ping's numbers
    again = await daemon.client.get(f"/ping/{key}/nightly?create=1&period=1h")
    assert (again.status, await again.text()) == (200, "OK")
    assert (await daemon.query(DEFINITION, "nightly"))[0][:2] == (3600.0, None)
    assert len(await daemon.query("SELECT 1 FROM pings")) == 2


async def test_the_check_goes_down_on_the_declared_schedule(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    await daemon.client.get(f"/ping/{key}/quick?create=1&period=60&grace=30")
    await daemon.advance(89)
    assert (await daemon.query("SELECT status FROM checks"))[0] == ("up",)
    await daemon.advance(2)
    assert (await daemon.query("SELECT status FROM checks"))[0] == ("down",)


async def test_a_bad_definition_is_a_400_naming_the_parameter_and_records_nothing(
    daemon: Daemon,
) -> None:
    key = await daemon.store.ping_key()
    for query, said in [
        ("cron=0+3+*+*", "cron:"), ("period=0s", "period: must be between"),
        ("tz=Mars/Base", "tz:"), ("misses=500", "misses: must be from 1 to 100"),
        ("period=1h&cron=0+3+*+*+*", "period or cron"),
    ]:  # fmt: skip
        response = await daemon.client.get(f"/ping/{key}/job?create=1&{query}")
        assert response.status == 400 and said in await response.text(), query
    assert await daemon.query("SELECT 1 FROM checks") == []


async def test_without_the_ping_key_nothing_is_declared(daemon: Daemon) -> None:
    response = await daemon.client.get("/ping/wrongkeywrongkeywrong/job?create=1&period=1h")
    assert response.status == 404
    assert await daemon.query("SELECT 1 FROM checks") == []


async def test_a_config_file_check_is_not_redefined_by_a_ping(start_daemon: Any) -> None:
    daemon: Daemon = await start_daemon('[[check]]\nname = "db"\nperiod = "1d"\n')
    key = await daemon.store.ping_key()
    same = await daemon.client.get(f"/ping/{key}/db?create=1&period=1d")
    assert (same.status, await same.text()) == (200, "OK")
    other = await daemon.client.get(f"/ping/{key}/db?create=1&period=1h")
    assert other.status == 409 and "config file" in await other.text()
    assert (await daemon.query(DEFINITION, "db"))[0][0] == 86400.0
    assert len(await daemon.query("SELECT 1 FROM pings")) == 1
