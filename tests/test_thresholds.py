"""Thresholds that count runs and early pings for cron slots (issue 21).

Proves, on the real app, a real SQLite file and the manual clock: `failures = N` takes a
check down exactly at its N-th failed, timed-out or missed run in a row and alerts once; a
success in between starts the count again; `recoveries = N` keeps a check down until N
successes in a row; the page and the API say where a count stands; the counts survive a
restart; `early` lets a ping just before a cron slot count for that slot; and the config
file, the API and the CLI take the three settings and refuse bad values with a sentence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core.config import ConfigError, load_config
from heartbeatd.core.model import unique_key
from tests.conftest import Daemon
from tests.test_api import Api


async def flips(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query(
        "SELECT old_status, new_status, reason, at, detail FROM flips ORDER BY id"
    )


async def alerts(daemon: Daemon) -> list[str]:
    return [event for (event,) in await daemon.query("SELECT event FROM outbox ORDER BY id")]


async def ping(daemon: Daemon, check: Any, suffix: str = "") -> None:
    response = await daemon.client.get(f"/ping/{check.uuid}{suffix}")
    assert response.status == 200


async def page(daemon: Daemon) -> str:
    response = await daemon.client.get("/")
    return await response.text()


@pytest.fixture
async def api(start_daemon: Callable[..., Any]) -> Api:
    daemon = await start_daemon()
    now = daemon.clock.now()
    rw, _ = await daemon.store.create_api_key("writer", False, now, "cli")
    return Api(daemon, rw, "")


async def test_three_failures_take_a_check_down_at_the_third_with_one_alert(
    daemon: Daemon,
) -> None:
    check = await daemon.add(failures=3)
    await ping(daemon, check)
    await ping(daemon, check, "/fail")
    await ping(daemon, check, "/1")  # a non-zero exit status is a failed run too
    assert [f[1] for f in await flips(daemon)] == ["up"]
    assert await alerts(daemon) == []
    assert "2 of 3 failures" in await page(daemon)
    await ping(daemon, check, "/fail")
    down = (await flips(daemon))[-1]
    assert (*down[:3], down[4]) == ("up", "down", "fail", "3 failed or missed runs in a row")
    await ping(daemon, check, "/fail")
    assert await alerts(daemon) == ["down"]
    assert "of 3 failures" not in await page(daemon)


async def test_a_success_between_failures_starts_the_count_again(daemon: Daemon) -> None:
    check = await daemon.add(failures=3)
    for suffix in ("/fail", "/fail", "", "/fail", "/fail"):
        await ping(daemon, check, suffix)
    assert await alerts(daemon) == []
    assert "2 of 3 failures" in await page(daemon)
    await ping(daemon, check, "/fail")
    assert await alerts(daemon) == ["down"]


async def test_a_run_past_its_max_runtime_counts_as_a_failed_run(daemon: Daemon) -> None:
    check = await daemon.add(failures=2, max_runtime=5.0)
    await ping(daemon, check)
    await ping(daemon, check, "/start")
    await daemon.advance(6)
    assert await alerts(daemon) == []  # one timed-out run of two: counted, not alerted
    assert "1 of 2 failures" in await page(daemon)
    await ping(daemon, check, "/start")
    started = daemon.clock.now()
    await daemon.advance(6)
    down = (await flips(daemon))[-1]
    assert down[1:4] == ("down", "timeout", started + 5)
    assert down[4] == "run did not finish within 5s; 2 failed or missed runs in a row"
    assert await alerts(daemon) == ["down"]


async def test_a_timed_out_run_below_the_threshold_reads_up_before_the_monitor_turns(
    api: Api,
) -> None:
    check = await api.create(failures=2, max_runtime=5)
    await api.ping(check)
    await api.ping(check, "/start")
    api.daemon.clock.advance(6)  # the monitor has not had its turn: the page derives it
    _, shown = await api.call("GET", f"checks/{check['uuid']}")
    assert (shown["status"], shown["counting"]) == ("up", "1 of 2 failures")


async def test_missed_runs_count_towards_failures(daemon: Daemon) -> None:
    """failures = 3 with a period of 60 s and a grace of 10 s: a failed run, then silence,
    goes down when two more expected pings are missed, not at the first."""
    check = await daemon.add(failures=3, period=60.0, grace=10.0)
    await ping(daemon, check, "/fail")
    failed = daemon.clock.now()
    await daemon.advance(71)
    assert await alerts(daemon) == []
    assert "2 of 3 failures" in await page(daemon)
    await daemon.advance(60)
    assert (await flips(daemon))[-1][1:] == (
        "down", "timeout", failed + 130, "3 failed or missed runs in a row"
    )  # fmt: skip
    assert await alerts(daemon) == ["down"]


async def test_silence_alone_needs_failures_missed_pings(daemon: Daemon) -> None:
    check = await daemon.add(failures=2, period=60.0, grace=10.0)
    await ping(daemon, check)
    await daemon.advance(71)
    assert await alerts(daemon) == []
    await daemon.advance(60)
    assert await alerts(daemon) == ["down"]


async def test_two_recoveries_need_two_successes_in_a_row(daemon: Daemon) -> None:
    check = await daemon.add(recoveries=2)
    await ping(daemon, check, "/fail")
    await ping(daemon, check)
    assert [f[1] for f in await flips(daemon)] == ["down"]
    assert "1 of 2 successes" in await page(daemon)
    await ping(daemon, check, "/fail")  # a failure starts the count again
    await ping(daemon, check)
    assert await alerts(daemon) == ["down"]
    await ping(daemon, check)
    assert [f[1] for f in await flips(daemon)] == ["down", "up"]
    assert (await flips(daemon))[-1][4] == "2 successful runs in a row"
    assert await alerts(daemon) == ["down", "up"]


async def test_a_missed_ping_between_successes_starts_the_recovery_again(
    daemon: Daemon,
) -> None:
    check = await daemon.add(recoveries=2, period=60.0, grace=10.0)
    await ping(daemon, check, "/fail")
    await ping(daemon, check)
    await daemon.advance(71)  # the next expected ping missed
    await ping(daemon, check)
    assert await alerts(daemon) == ["down"]
    await daemon.advance(30)
    await ping(daemon, check)
    assert await alerts(daemon) == ["down", "up"]


async def test_the_counts_survive_a_restart(start_daemon: Callable[..., Any]) -> None:
    first = await start_daemon()
    check = await first.add(failures=2, recoveries=2)
    await ping(first, check, "/fail")
    await first.client.close()
    second = await start_daemon()
    await ping(second, check, "/fail")
    await ping(second, check)
    await second.client.close()
    third = await start_daemon()
    assert "1 of 2 successes" in await page(third)
    await ping(third, check)
    assert await alerts(third) == ["down", "up"]


async def test_a_ping_up_to_early_before_a_cron_slot_counts_for_the_slot(
    daemon: Daemon,
) -> None:
    """The clock starts at 08:00 UTC. With early = 30 s, a job for the 09:00 slot whose host
    clock runs 15 s fast pings at 08:59:45: that is the 09:00 run, so 09:01 passes quietly
    and the next one expected is tomorrow's. Without `early` it went down at 09:01."""
    check = await daemon.add(cron="0 9 * * *", period=None, grace=60.0, early=30.0)
    plain = await daemon.add("plain", cron="0 9 * * *", period=None, grace=60.0)
    await daemon.advance(3585)
    await ping(daemon, check)
    await ping(daemon, plain)
    await daemon.advance(90)
    states = await daemon.query("SELECT slug, status FROM checks ORDER BY id")
    assert states == [("backup", "up"), ("plain", "down")]
    await daemon.advance(86400)
    assert (await daemon.query("SELECT status FROM checks WHERE slug = 'backup'")) == [("down",)]


async def test_a_ping_more_than_early_before_the_slot_does_not_count_for_it(
    daemon: Daemon,
) -> None:
    check = await daemon.add(cron="0 9 * * *", period=None, grace=60.0, early=30.0)
    await daemon.advance(3560)  # 08:59:20, 40 s early
    await ping(daemon, check)
    await daemon.advance(110)
    assert (await daemon.query("SELECT status FROM checks")) == [("down",)]


def test_the_config_file_takes_the_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(
        '[[check]]\nname = "nightly"\ncron = "0 3 * * *"\n'
        'failures = 3\nrecoveries = "2"\nearly = "30s"\n'
    )
    (check,) = load_config(path, {}, {}).checks
    assert (check.failures, check.recoveries, check.early) == (3, 2, 30.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("failures = 0", "failures: must be from 1 to 100, got 0"),
        ("recoveries = 101", "recoveries: must be from 1 to 100, got 101"),
        ("failures = true", "failures: expected a whole number"),
        ('early = "1m"', "early: must be from 0s to 30s, got 60s"),
        ('early = "soon"', "early: expected a duration"),
    ],
)
def test_the_config_file_refuses_bad_thresholds_by_key(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(f'[[check]]\nname = "nightly"\nperiod = "1h"\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, {})
    assert str(caught.value).startswith(f"{path}:4: {message}")


async def test_the_api_takes_and_returns_the_thresholds(api: Api) -> None:
    check = await api.create(failures=3, recoveries=2, schedule="0 3 * * *", early=30)
    assert (check["failures"], check["recoveries"], check["early"]) == (3, 2, 30)
    assert check["counting"] == ""
    status, updated = await api.call("POST", f"checks/{check['uuid']}", {"failures": 5})
    assert status == 200
    assert (updated["failures"], updated["recoveries"], updated["early"]) == (5, 2, 30)
    await api.ping(check, "/fail")
    status, shown = await api.call("GET", f"checks/{check['uuid']}")
    assert (shown["status"], shown["counting"]) == ("up", "1 of 5 failures")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"failures": 0}, "json validation error: failures must be from 1 to 100"),
        ({"recoveries": 1.5}, "json validation error: recoveries is not a number"),
        ({"early": 31}, "json validation error: early is too large"),
        ({"early": -1}, "json validation error: early is too small"),
        ({"early": "30s"}, "json validation error: early is not a number"),
    ],
)
async def test_the_api_refuses_bad_thresholds(
    api: Api, fields: dict[str, Any], message: str
) -> None:
    status, body = await api.call("POST", "checks/", {"name": "x", "timeout": 60, **fields})
    assert (status, body) == (400, {"error": message})


def test_the_cli_adds_a_check_with_thresholds(hb: Callable[..., Any]) -> None:
    result = hb(
        "check", "add", "nightly", "--cron", "0 3 * * *", "--failures", "3",
        "--recoveries", "2", "--early", "30s", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    added = json.loads(result.output)
    assert (added["failures"], added["recoveries"], added["early"]) == (3, 2, 30.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--failures", "0"], "Invalid value for '--failures': must be from 1 to 100, got 0"),
        (["--recoveries", "500"], "Invalid value for '--recoveries': must be from 1 to 100"),
        (["--early", "2m"], "Invalid value for '--early': must be from 0s to 30s, got 120s"),
    ],
)
def test_the_cli_refuses_bad_thresholds_with_a_sentence(
    hb: Callable[..., Any], args: list[str], message: str
) -> None:
    result = hb("check", "add", "nightly", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


async def test_the_page_still_lists_a_slot_due_within_early_as_next(daemon: Daemon) -> None:
    check = await daemon.add(cron="0 9 * * *", period=None, grace=60.0, early=30.0)
    await daemon.advance(3585)  # 08:59:45, no ping yet: 09:00 is still expected
    response = await daemon.client.get(f"/checks/{unique_key(check.uuid)}")
    html = await response.text()
    assert html.index("2027-01-15 09:00") < html.index("2027-01-16 09:00")
