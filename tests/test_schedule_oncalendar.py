"""OnCalendar schedules (issue 20): what Terraform's healthchecksio provider and other clients
send as `schedule` since Healthchecks 3.1, and what heartbeatd answered with a 400 before.

Proves: systemd's expressions (several, one per line) give the same deadlines as systemd runs
the job, across Berlin's clock changes; the API takes them and gives them back as sent (the
provider's own create, read and update replayed); the config file, the web form and the CLI
take them too, and refuse bad ones saying where and why; a check goes down once its OnCalendar
slot and grace have passed; and no expression makes the deadline search spin.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from heartbeatd.core.clock import ManualClock
from heartbeatd.core.config import ConfigError, load_config
from heartbeatd.core.schedule import (
    Schedule,
    deadline_after,
    describe,
    in_words,
    upcoming,
    validate_schedule,
)
from heartbeatd.importers.systemd import Timer, propose_timers
from tests.conftest import Daemon, Invoke
from tests.test_web import PRIVATE, log_in, page

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = "Mon..Fri 09:00"


def berlin(*fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc]


def calendar(expr: str, tz: str = "Europe/Berlin") -> Schedule:
    return Schedule(grace=600, cron=expr, tz=tz)


@pytest.fixture
def clock() -> ManualClock:
    """Monday 18 January 2027, 08:00 in Berlin: an hour before a weekday 09:00 slot."""
    return ManualClock(wall=berlin(2027, 1, 18, 8, 0))


# -- deadlines -------------------------------------------------------------------------------


def test_a_weekday_calendar_expects_monday_after_a_friday_ping() -> None:
    friday_run = berlin(2024, 6, 14, 9, 0, 3)
    assert upcoming(calendar(WEEKDAYS), friday_run, 3) == [
        berlin(2024, 6, 17, 9, 0),
        berlin(2024, 6, 18, 9, 0),
        berlin(2024, 6, 19, 9, 0),
    ]


def test_several_expressions_one_per_line_are_all_expected_in_time_order() -> None:
    schedule = calendar("Mon..Fri 09:00\nSat,Sun 12:00\n")
    assert upcoming(schedule, berlin(2024, 6, 14, 12, 0), 3) == [
        berlin(2024, 6, 15, 12, 0),
        berlin(2024, 6, 16, 12, 0),
        berlin(2024, 6, 17, 9, 0),
    ]


def test_a_line_with_its_own_zone_fires_in_that_zone() -> None:
    both = calendar("09:00 Europe/Berlin\n09:00 America/New_York", tz="UTC")
    new_york_nine = datetime(2024, 6, 10, 9, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert upcoming(both, berlin(2024, 6, 10, 8, 0), 2) == [berlin(2024, 6, 10, 9, 0),
                                                            new_york_nine]  # fmt: skip


def test_a_slot_in_berlins_skipped_spring_hour_does_not_happen_that_day() -> None:
    """02:30 does not exist on 31 March 2024; systemd skips the run (unlike cron, which runs it
    at 03:00), so the check expects none until 1 April and does not go down on the 31st."""
    assert upcoming(calendar("02:30"), berlin(2024, 3, 30, 2, 30), 2) == [
        berlin(2024, 4, 1, 2, 30),
        berlin(2024, 4, 2, 2, 30),
    ]


def test_a_slot_in_berlins_repeated_autumn_hour_happens_once() -> None:
    """02:30 comes twice on 27 October 2024; systemd runs the job at the first."""
    assert upcoming(calendar("02:30"), berlin(2024, 10, 26, 12, 0), 2) == [
        berlin(2024, 10, 27, 2, 30, fold=0),
        berlin(2024, 10, 28, 2, 30),
    ]


def test_a_ping_in_the_second_showing_of_the_repeated_hour_is_not_given_a_past_deadline() -> None:
    """oncalendar counts from the wall clock: from 02:20 CET it offers 02:30 CEST, an hour
    before the ping. Taken as the deadline, the check would be late the moment it pinged."""
    second_showing = berlin(2024, 10, 27, 2, 20, fold=1)
    deadline = deadline_after(calendar("*:30"), second_showing)
    assert deadline == berlin(2024, 10, 27, 3, 30)
    hourly = upcoming(calendar("*:30"), berlin(2024, 10, 27, 0, 40), 4)
    assert [b - a for a, b in itertools.pairwise(hourly)] == [3600.0, 7200.0, 3600.0]


def test_a_date_only_in_2099_is_expected_then_and_a_past_one_never() -> None:
    """Both cost a few years' walk, not a spin: the search stops at the date or at 2200."""
    started = time.perf_counter()
    assert upcoming(calendar("2099-06-01 12:00"), berlin(2027, 1, 18, 8, 0), 5) == [
        berlin(2099, 6, 1, 12, 0)
    ]
    assert deadline_after(calendar("2001-01-01"), berlin(2027, 1, 18, 8, 0)) is None
    assert time.perf_counter() - started < 1.0


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("Mon..Fri 25:00", "'Mon..Fri 25:00' is neither cron (5 fields) nor OnCalendar: Bad hour"),
        ("Mon 09:00\n*-02-30", "OnCalendar expression '*-02-30' never fires"),
        ("00:00 Europe", "'Europe' is not a time zone"),  # a folder of zones: once a 500
        ("0 3 * *", "neither cron (5 fields) nor OnCalendar"),  # cron with a field missing
        ("Mon 09:00\nMon 2024-01-01 09:00 UTC x", "at most 4 parts"),  # 5 parts, 2 lines
        ("", "Wrong number of fields"),
    ],
)
def test_a_bad_expression_is_refused_saying_why(expr: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        validate_schedule(expr)


def test_a_line_that_never_fires_is_refused_after_a_bounded_search() -> None:
    """oncalendar gives up on a date that never comes only at the year 2200, ~15 ms a line for
    the slowest; refusing it once here keeps that search off every later ping."""
    worst = "\n".join(["Mon *-02-29"] * 7 + ["*-2,4,6,9,11-31"])
    assert len(worst) <= 100
    started = time.perf_counter()
    with pytest.raises(ValueError, match="never fires"):
        validate_schedule(worst)
    assert time.perf_counter() - started < 1.0


def test_the_words_quote_the_calendar_as_systemd_writes_it() -> None:
    two = calendar("Mon..Fri  09:00\r\nSat 12:00")
    assert in_words(two) == "on calendar Mon..Fri 09:00 or Sat 12:00 in Europe/Berlin"
    assert describe(two) == "On calendar Mon..Fri 09:00 or Sat 12:00 (Europe/Berlin)"
    assert two.kind == "oncalendar" and calendar("0 9 * * 1-5").kind == "cron"


# -- the management API ----------------------------------------------------------------------


async def keyed(daemon: Daemon) -> str:
    key, _ = await daemon.store.create_api_key("terraform", False, daemon.clock.now(), "cli")
    return key


async def call(daemon: Daemon, key: str, method: str, path: str, body: Any = None) -> Any:
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    response = await daemon.client.request(
        method, path, data=data, headers={"X-Api-Key": key, "Content-Type": "application/json"}
    )
    text = await response.text()
    return response.status, (json.loads(text) if response.status < 300 else text)


async def test_the_api_takes_an_oncalendar_schedule_and_gives_it_back(daemon: Daemon) -> None:
    key = await keyed(daemon)
    body = {"name": "report", "schedule": WEEKDAYS, "tz": "Europe/Berlin", "grace": 600}
    status, created = await call(daemon, key, "POST", "/api/v3/checks/", body)
    assert status == 201, created
    assert (created["schedule"], created["tz"]) == (WEEKDAYS, "Europe/Berlin")
    assert "timeout" not in created
    status, changed = await call(daemon, key, "POST", f"/api/v3/checks/{created['uuid']}",
                                 {"schedule": "Sat,Sun 12:00\nMon 07:30"})  # fmt: skip
    assert status == 200 and changed["schedule"] == "Sat,Sun 12:00\nMon 07:30"
    status, read = await call(daemon, key, "GET", f"/api/v3/checks/{created['uuid']}")
    assert status == 200 and (read["schedule"], read["tz"]) == (
        changed["schedule"],
        "Europe/Berlin",
    )


async def test_terraforms_create_read_and_update_of_an_oncalendar_check(daemon: Daemon) -> None:
    """What terraform-provider-healthchecksio (go-healthchecksio v2) sends: its default API is
    v1; the body is its Healthcheck struct marshalled in field order, a heredoc `schedule` ends
    in a newline. It finds the check again by update_url's last part in the list, and plans
    no change only if `schedule` and `tz` come back exactly as sent."""
    key = await keyed(daemon)
    sent = (
        '{"channels":"","grace":600,"methods":"","name":"nightly-report","slug":"nightly-report",'
        '"schedule":"Mon..Fri 09:00\\nSat 12:00\\n","tz":"Europe/Berlin"}'
    )
    status, created = await call(daemon, key, "POST", "/api/v1/checks/", sent)
    assert status == 201, created
    check_id = created["update_url"].split("/")[-1]
    status, listed = await call(daemon, key, "GET", "/api/v1/checks/")
    (read,) = [c for c in listed["checks"] if c["update_url"].split("/")[-1] == check_id]
    assert (read["schedule"], read["tz"]) == ("Mon..Fri 09:00\nSat 12:00\n", "Europe/Berlin")
    assert (read["slug"], read["grace"], read["methods"]) == ("nightly-report", 600, "")
    updated = sent.replace("Sat 12:00", "Sat 13:00")
    status, answer = await call(daemon, key, "POST", f"/api/v1/checks/{check_id}", updated)
    assert status == 200 and answer["schedule"] == "Mon..Fri 09:00\nSat 13:00\n"


@pytest.mark.parametrize("schedule", ["Mon..Fri 25:00", "*-02-30", "00:00 Europe", "every weekday"])
async def test_a_bad_schedule_is_a_400_naming_the_field(daemon: Daemon, schedule: str) -> None:
    key = await keyed(daemon)
    status, answer = await call(daemon, key, "POST", "/api/v3/checks/", {"schedule": schedule})
    assert status == 400
    error = "json validation error: schedule is not a valid cron or OnCalendar expression"
    assert answer == json.dumps({"error": error})
    assert await daemon.store.list_checks() == []


async def test_a_check_goes_down_after_its_oncalendar_slot_plus_grace(daemon: Daemon) -> None:
    key = await keyed(daemon)
    body = {"name": "report", "schedule": WEEKDAYS, "tz": "Europe/Berlin", "grace": 600}
    _, check = await call(daemon, key, "POST", "/api/v3/checks/", body)
    ping = await daemon.client.get(f"/ping/{check['uuid']}")  # Monday 08:00
    assert ping.status == 200
    _, up = await call(daemon, key, "GET", f"/api/v3/checks/{check['uuid']}")
    assert (up["status"], up["next_ping"]) == ("up", "2027-01-18T08:00:00+00:00")  # 09:00 CET

    await daemon.advance(3600 + 599)  # 09:09:59: late, not yet down
    _, late = await call(daemon, key, "GET", f"/api/v3/checks/{check['uuid']}")
    assert late["status"] == "grace"
    _, flips = await call(daemon, key, "GET", f"/api/v3/checks/{check['uuid']}/flips/")
    assert [flip["up"] for flip in flips["flips"]] == [1]  # new -> up at the ping only

    await daemon.advance(1)  # 09:10: the slot plus the grace
    _, flips = await call(daemon, key, "GET", f"/api/v3/checks/{check['uuid']}/flips/")
    down = [flip for flip in flips["flips"] if flip["up"] == 0]
    assert down == [{"timestamp": "2027-01-18T08:10:00+00:00", "up": 0}]


# -- the config file, the web form, the CLI --------------------------------------------------


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(text)
    return path


def test_the_config_file_takes_oncalendar_lines_in_the_cron_key(tmp_path: Path) -> None:
    path = config(tmp_path, '[[check]]\nname = "report"\ntz = "Europe/Berlin"\n'
                            'cron = """\nMon..Fri 09:00\nSat 12:00\n"""\n')  # fmt: skip
    (check,) = load_config(path, {}, {"db": str(tmp_path / "db")}).checks
    assert (check.cron, check.period) == ("Mon..Fri 09:00\nSat 12:00\n", None)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('"Mon..Fri 09:61"', "4: cron: 'Mon..Fri 09:61' is neither cron (5 fields) nor"),
        ('"""\nMon 09:00\n*-04-31\n"""', "4: cron: OnCalendar expression '*-04-31' never fires"),
    ],
)
def test_a_bad_oncalendar_line_in_the_config_names_file_line_and_key(
    tmp_path: Path, value: str, said: str
) -> None:
    path = config(tmp_path, f'[[check]]\nname = "report"\ngrace = "5m"\ncron = {value}\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, {}, {"db": str(tmp_path / "db")})
    assert str(raised.value).startswith(f"{path}:{said}")


async def test_the_web_form_keeps_each_line_and_the_page_shows_the_next_runs(
    start_daemon: Any,
) -> None:
    """A browser sends a textarea's lines with CRLF; an <input> would have dropped them."""
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    response = await daemon.client.post("/checks/new", data={
        "csrf": csrf, "name": "report", "slug": "", "tags": "", "desc": "", "kind": "cron",
        "period": "", "cron": "Mon..Fri 09:00\r\nSat 12:00\r\n", "tz": "Europe/Berlin",
        "grace": "10m",
    })  # fmt: skip
    assert response.status == 200 and response.url.path.startswith("/checks/")
    (check,) = await daemon.store.list_checks()
    assert check.cron == "Mon..Fri 09:00\nSat 12:00"
    html = await response.text()
    assert "on calendar Mon..Fri 09:00 or Sat 12:00 in Europe/Berlin" in html
    assert "<li>Mon 2027-01-18 09:00 CET</li>" in html and "<li>Fri 2027-01-22 09:00 CET" in html
    assert "OnCalendar=Mon..Fri 09:00 Europe/Berlin\nOnCalendar=Sat 12:00 Europe/Berlin" in html
    form = await page(daemon, f"/checks/{check.uuid}/edit")
    assert ">Mon..Fri 09:00\nSat 12:00</textarea>" in form


def test_check_add_takes_an_oncalendar_schedule_and_shows_a_systemd_timer(hb: Invoke) -> None:
    added = hb("check", "add", "report", "--cron", WEEKDAYS, "--tz", "Europe/Berlin")
    assert added.exit_code == 0, added.output
    assert "On calendar Mon..Fri 09:00 (Europe/Berlin)" in added.output
    assert "[Timer]\n  OnCalendar=Mon..Fri 09:00 Europe/Berlin\n" in added.output
    bad = hb("check", "add", "other", "--cron", "Mon..Fri 9:99")
    assert bad.exit_code == 2 and "neither cron (5 fields) nor OnCalendar: Bad minute" in bad.output


def test_a_timer_whose_calendar_cron_cannot_say_keeps_it_instead_of_a_guessed_period() -> None:
    """`import systemd-timers` turned a weekday-and-day calendar, or several OnCalendar= lines,
    into NEXT - LAST: a month's gap for a job that runs twice a month, so a missed run went
    unseen for weeks. Now the check expects each run systemd makes."""
    runs = datetime(2026, 11, 1, 6, 30), datetime(2026, 11, 15, 6, 30)
    timers = [Timer("scrub.timer", "scrub.service", runs[1], runs[0]),
              Timer("sync.timer", "sync.service", None, None)]  # fmt: skip
    calendars = {"scrub.timer": ["Sat,Sun *-*-01,15 06:30:00"],
                 "sync.timer": ["Mon..Fri *-*-* 09:00:00", "Sat *-*-* 12:00:00"]}  # fmt: skip
    proposals, skipped = propose_timers(timers, calendars, "Europe/Berlin")
    assert [(p.slug, p.cron, p.period) for p in proposals] == [
        ("scrub", "Sat,Sun *-*-01,15 06:30:00", None),
        ("sync", "Mon..Fri *-*-* 09:00:00\nSat *-*-* 12:00:00", None),
    ]
    assert skipped == []
