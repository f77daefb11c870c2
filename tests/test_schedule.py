"""When a check's next ping is due (heartbeatd/core/schedule.py): periods, cron in a time zone, the
days the clocks change, and the words the pages and the CLI show for a schedule.

tests/test_properties.py checks cron deadlines against a brute-force walk for random
expressions; these pin the cases a person would look up by date, each worked out by hand.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from heartbeatd.core.schedule import (
    Schedule,
    deadline_after,
    describe,
    in_words,
    upcoming,
    validate_cron,
    validate_tz,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def berlin(*fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc]


def daily(expr: str = "0 3 * * *", tz: str = "Europe/Berlin") -> Schedule:
    return Schedule(grace=600, cron=expr, tz=tz)


# -- periods -------------------------------------------------------------------------------


def test_a_period_expects_the_next_ping_one_period_after_the_last() -> None:
    schedule = Schedule(grace=60, period=300)
    assert deadline_after(schedule, 1000.0) == 1300.0
    assert deadline_after(schedule, 1000.0, n=3) == 1900.0  # misses = 3: three periods
    assert upcoming(schedule, 1000.0, 4) == [1300.0, 1600.0, 1900.0, 2200.0]


def test_a_periods_deadline_ignores_time_zones_and_clock_changes() -> None:
    before_the_change = berlin(2024, 10, 27, 1, 30)  # the clocks go back at 03:00
    schedule = Schedule(grace=60, period=3600, tz="Europe/Berlin")
    assert deadline_after(schedule, before_the_change) == before_the_change + 3600


# -- cron ----------------------------------------------------------------------------------


def test_cron_expects_the_next_slot_in_the_checks_zone() -> None:
    after_lunch = berlin(2024, 6, 10, 13, 0)
    assert deadline_after(daily(), after_lunch) == berlin(2024, 6, 11, 3, 0)


def test_a_ping_early_for_a_slot_does_not_count_for_it() -> None:
    """Healthchecks #830: a ping at 02:55 for the 03:00 job still expects one after 03:00."""
    assert deadline_after(daily(), berlin(2024, 6, 10, 2, 55)) == berlin(2024, 6, 10, 3, 0)


def test_a_ping_at_the_slot_expects_the_next_one() -> None:
    at_the_slot = berlin(2024, 6, 10, 3, 0)
    assert deadline_after(daily(), at_the_slot) == berlin(2024, 6, 11, 3, 0)
    assert deadline_after(daily(), at_the_slot + 0.5) == berlin(2024, 6, 11, 3, 0)


def test_a_ping_a_hair_before_the_slot_does_not_skip_it() -> None:
    """datetime keeps microseconds: a ping 0.4 ms early once started the count at the slot."""
    hair_before = berlin(2024, 6, 10, 3, 0) - 0.0004
    assert deadline_after(daily(), hair_before) == berlin(2024, 6, 10, 3, 0)


def test_the_nth_missed_cron_slot_is_n_slots_on() -> None:
    last = berlin(2024, 6, 10, 13, 0)
    assert deadline_after(daily(), last, n=3) == berlin(2024, 6, 13, 3, 0)


def test_the_same_cron_in_another_zone_is_another_moment() -> None:
    nine = "0 9 * * *"
    winter = datetime(2024, 1, 10, 12, 0, tzinfo=NEW_YORK).timestamp()
    summer = datetime(2024, 7, 10, 12, 0, tzinfo=NEW_YORK).timestamp()
    utc_deadline = deadline_after(daily(nine, "UTC"), winter)
    ny_winter = deadline_after(daily(nine, "America/New_York"), winter)
    ny_summer = deadline_after(daily(nine, "America/New_York"), summer)
    assert utc_deadline is not None and ny_winter is not None and ny_summer is not None
    assert ny_winter - utc_deadline == 5 * 3600  # 09:00 EST is 14:00 UTC
    assert datetime.fromtimestamp(ny_summer, NEW_YORK).hour == 9  # and 09:00 EDT in summer


# -- the days the clocks change ------------------------------------------------------------


def test_a_slot_in_the_skipped_spring_hour_is_due_when_the_clocks_jump() -> None:
    """02:30 does not exist in Berlin on 31 March 2024; the job runs at 03:00 (cronsim, like
    Healthchecks), not a day later, so a check is not left unwatched for 48 hours."""
    assert upcoming(daily("30 2 * * *"), berlin(2024, 3, 30, 12, 0), 3) == [
        berlin(2024, 3, 31, 3, 0),
        berlin(2024, 4, 1, 2, 30),
        berlin(2024, 4, 2, 2, 30),
    ]


def test_a_daily_slot_in_the_repeated_autumn_hour_is_due_once() -> None:
    """02:30 happens twice in Berlin on 27 October 2024; cron runs the job at the first."""
    assert upcoming(daily("30 2 * * *"), berlin(2024, 10, 26, 12, 0), 3) == [
        berlin(2024, 10, 27, 2, 30, fold=0),
        berlin(2024, 10, 28, 2, 30),
        berlin(2024, 10, 29, 2, 30),
    ]
    second_showing = berlin(2024, 10, 27, 2, 50, fold=1)
    assert deadline_after(daily("30 2 * * *"), second_showing) == berlin(2024, 10, 28, 2, 30)


def test_an_hourly_slot_is_due_every_real_hour_across_both_changes() -> None:
    hourly = daily("15 * * * *")
    autumn = upcoming(hourly, berlin(2024, 10, 27, 0, 20), 5)
    assert [b - a for a, b in itertools.pairwise(autumn)] == [3600.0] * 4
    assert autumn[1:3] == [berlin(2024, 10, 27, 2, 15), berlin(2024, 10, 27, 2, 15, fold=1)]
    spring = upcoming(hourly, berlin(2024, 3, 31, 0, 20), 3)
    assert spring == [berlin(2024, 3, 31, 1, 15), berlin(2024, 3, 31, 3, 15),
                      berlin(2024, 3, 31, 4, 15)]  # fmt: skip


# -- upcoming ------------------------------------------------------------------------------


def test_upcoming_lists_the_next_slots_in_order_and_as_many_as_asked() -> None:
    weekdays = daily("0 9 * * 1-5")
    friday = berlin(2024, 6, 14, 12, 0)
    assert upcoming(weekdays, friday, 3) == [
        berlin(2024, 6, 17, 9, 0),  # Monday: the weekend is skipped
        berlin(2024, 6, 18, 9, 0),
        berlin(2024, 6, 19, 9, 0),
    ]
    assert upcoming(weekdays, friday, 0) == []


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("* * * * * *", "expected 5 fields"),
        ("0 3 * *", "expected 5 fields"),
        ("61 * * * *", "bad cron expression '61 * * * *': Bad minute"),
        ("0 0 30 2 *", "Bad day-of-month"),  # 30 February never comes
        ("0 " * 50 + "*", "too long"),
    ],
)
def test_a_cron_expression_cron_would_not_run_is_refused_saying_why(expr: str, said: str) -> None:
    with pytest.raises(ValueError, match=said.replace("*", r"\*")):
        validate_cron(expr)


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 3 * * MON-FRI", "0 0 1 1 *"])
def test_common_cron_expressions_are_accepted(expr: str) -> None:
    validate_cron(expr)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd", "A" * 300])
def test_a_zone_that_is_not_a_zone_is_refused_as_unknown(tz: str) -> None:
    """A name too long for a file name raised OSError, which the API answered with a 500."""
    with pytest.raises(ValueError, match="unknown time zone"):
        validate_tz(tz)


# -- in words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        (Schedule(60, period=1), "every second"),
        (Schedule(60, period=1.5), "every 1.5 seconds"),
        (Schedule(60, period=60), "every minute"),
        (Schedule(60, period=7200), "every 2 hours"),
        (Schedule(60, period=7 * 86400), "every week"),
        (Schedule(60, period=14 * 86400), "every 2 weeks"),
        (Schedule(60, cron="*/15 * * * *"), "every 15th minute of every hour in UTC"),
    ],
)
def test_schedules_read_as_a_person_says_them(schedule: Schedule, words: str) -> None:
    assert in_words(schedule) == words


def test_the_terse_form_names_the_zone_of_a_cron_schedule() -> None:
    assert describe(Schedule(60, period=300)) == "every 5m"
    assert describe(daily("0 3 * * 1", "Asia/Tokyo")) == "At 03:00 on Monday (Asia/Tokyo)"
    assert Schedule(60, period=300).kind == "simple" and daily().kind == "cron"
