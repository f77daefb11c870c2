"""Property tests (hypothesis) of the schedule engine and of the check state machine.

Schedules: the next deadline is always after the last ping; a cron expression in a zone with
daylight-saving time never yields a deadline before the ping, and no slot between the ping and
the deadline is skipped (checked against a minute-by-minute walk of the zone's wall clock).
States: any sequence of pings, pauses, resumes and clock moves, with the monitor's expiry run
whenever a deadline passes, changes a status only by a flip, one flip per change, and a paused
check never alerts unless its job speaks: a `/fail`, or a `/start` that never finishes, takes
a paused check down as in Healthchecks (PROTOCOL.md §2); silence never does.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heartbeatd.core import model
from heartbeatd.core.model import Check, Flip, Status
from heartbeatd.core.schedule import Schedule, deadline_after

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Asia/Kolkata",
]
START, END = 1_577_836_800, 1_893_456_000  # 2020 to 2030: each zone above changes clocks in it
instants = st.floats(min_value=START, max_value=END, allow_nan=False)


def transitions(zone: str) -> list[float]:
    """The moments (to the minute) at which `zone` moves its clocks between START and END."""
    tz = ZoneInfo(zone)
    found = []
    for day in range(START, END, 86400):
        if (
            datetime.fromtimestamp(day, tz).utcoffset()
            != datetime.fromtimestamp(day + 86400, tz).utcoffset()
        ):
            low, high = day, day + 86400
            while high - low > 60:
                mid = (low + high) // 2 // 60 * 60
                same = datetime.fromtimestamp(mid, tz).utcoffset()
                low, high = (
                    (mid, high)
                    if same == datetime.fromtimestamp(low, tz).utcoffset()
                    else (low, mid)
                )
            found.append(float(high))
    return found


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str, float]:
    """A zone and a moment, half the time within two days of one of its clock changes."""
    zone = draw(st.sampled_from(ZONES))
    changes = TRANSITIONS[zone]
    if changes and draw(st.booleans()):
        return zone, draw(st.sampled_from(changes)) + draw(st.floats(-2 * 86400, 2 * 86400))
    return zone, draw(instants)


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}


# -- schedules ----------------------------------------------------------------------------------


@FAST
@given(
    last_ping=instants,
    period=st.floats(min_value=1, max_value=365 * 86400),
    misses=st.integers(min_value=1, max_value=10),
)
def test_a_period_deadline_is_after_the_ping(last_ping: float, period: float, misses: int) -> None:
    deadline = deadline_after(Schedule(grace=0, period=period), last_ping, misses)
    assert deadline is not None and deadline > last_ping
    assert deadline == last_ping + misses * period


def cron_fields() -> st.SearchStrategy[tuple[frozenset[int], frozenset[int], frozenset[int]]]:
    """Minutes, hours and weekdays as sets; day of month and month stay `*`, so a slot is a
    local wall-clock minute whose minute, hour and weekday are in them."""
    minutes = st.frozensets(st.integers(0, 59), min_size=1, max_size=4)
    hours = st.one_of(
        st.just(frozenset(range(24))),
        st.frozensets(st.integers(0, 23), min_size=1, max_size=4),
        st.just(frozenset({1, 2, 3})),  # the hours DST moves through in most zones
    )
    weekdays = st.one_of(st.just(frozenset(range(7))), st.frozensets(st.integers(0, 6), min_size=1))
    return st.tuples(minutes, hours, weekdays)


def expression(minutes: frozenset[int], hours: frozenset[int], days: frozenset[int]) -> str:
    def field(values: frozenset[int], every: int) -> str:
        return "*" if len(values) == every else ",".join(map(str, sorted(values)))

    return f"{field(minutes, 60)} {field(hours, 24)} * * {field(days, 7)}"


def matching_wall_minutes(
    fields: tuple[frozenset[int], frozenset[int], frozenset[int]], zone: str, after: float,
    before: float,
) -> list[datetime]:  # fmt: skip
    """Every real instant in (after, before) whose local wall time is a slot, minute by minute;
    a wall time the clock shows twice (autumn) counts once, at its first showing."""
    minutes, hours, days = fields
    tz = ZoneInfo(zone)
    found = []
    start = (int(after) // 60 + 1) * 60
    for moment in range(start, int(before), 60):
        local = datetime.fromtimestamp(moment, tz)
        cron_weekday = (local.weekday() + 1) % 7  # cron: Sunday is 0
        slot = local.minute in minutes and local.hour in hours and cron_weekday in days
        if slot and local.fold == 0:
            found.append(local)
    return found


@FAST
@given(fields=cron_fields(), where=zone_and_instant())
def test_a_cron_deadline_is_after_the_ping_and_skips_no_slot(
    fields: tuple[frozenset[int], frozenset[int], frozenset[int]], where: tuple[str, float]
) -> None:
    zone, last_ping = where
    schedule = Schedule(grace=0, cron=expression(*fields), tz=zone)
    deadline = deadline_after(schedule, last_ping)
    assert deadline is not None
    assert deadline > last_ping
    assert deadline - last_ping <= 7 * 86400 + 7200  # a weekly slot at worst, DST included
    skipped = matching_wall_minutes(fields, zone, last_ping, deadline)
    assert skipped == [], f"{schedule.cron} in {zone}: slots before {deadline} were skipped"


@FAST
@given(fields=cron_fields(), where=zone_and_instant(), misses=st.integers(2, 4))
def test_the_nth_missed_cron_slot_is_the_nth_slot(
    fields: tuple[frozenset[int], frozenset[int], frozenset[int]], where: tuple[str, float],
    misses: int,
) -> None:  # fmt: skip
    zone, last_ping = where
    schedule = Schedule(grace=0, cron=expression(*fields), tz=zone)
    moment = last_ping
    for _ in range(misses):
        step = deadline_after(schedule, moment)
        assert step is not None and step > moment
        moment = step
    assert deadline_after(schedule, last_ping, misses) == moment


# -- the state machine --------------------------------------------------------------------------


def new_check(period: float, grace: float, misses: int, max_runtime: float | None) -> Check:
    return Check(
        id=1, uuid="u", name="c", slug="c", tags="", desc="", period=period, cron=None, tz="UTC",
        grace=grace, misses=misses, max_runtime=max_runtime, manual_resume=False, methods="",
        notifiers=None, managed=False, created=0.0, status=Status.NEW, last_ping=None,
        last_start=None, last_start_rid=None, last_duration=None, n_pings=0, alert_after=None,
    )  # fmt: skip


operations = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["success", "fail", "start", "log"]), st.sampled_from([None, "r"])
        ),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("resume"), st.none()),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=500)),
        st.tuples(st.just("wall-step"), st.sampled_from([-3600.0, 3600.0])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    period=st.floats(min_value=1, max_value=300),
    grace=st.floats(min_value=0, max_value=120),
    misses=st.integers(1, 3),
    max_runtime=st.one_of(st.none(), st.floats(min_value=1, max_value=300)),
)
def test_statuses_change_only_by_one_flip_and_paused_checks_never_alert(
    ops: list[tuple[str, object]], period: float, grace: float, misses: int,
    max_runtime: float | None,
) -> None:  # fmt: skip
    check = new_check(period, grace, misses, max_runtime)
    now = 1_800_000_000.0
    flips: list[Flip] = []
    job_spoke = False  # a start, fail or success ping since the last pause

    def step(change: Flip | None, before: str) -> None:
        if check.status == before:
            assert change is None, f"a flip without a status change: {change}"
            return
        assert change is not None, f"{before} -> {check.status} without a flip"
        assert (change.old, change.new) == (before, check.status)
        if before == Status.PAUSED and change.notifies:
            assert job_spoke, f"a paused check alerted on its own: {change}"
        flips.append(change)

    def expire_due() -> None:
        """The monitor: when the armed moment has passed, expire against it."""
        while check.alert_after is not None and check.alert_after <= now:
            before, armed = check.status, check.alert_after
            assert before != Status.PAUSED or job_spoke, "a silent paused check was armed"
            change = model.expire(check, armed)
            step(change, before)
            assert change is not None and change.at == armed <= now

    for op, arg in ops:
        before = check.status
        if op == "wait":
            assert isinstance(arg, float)
            now += arg
            expire_due()
            continue
        if op == "wall-step":
            assert isinstance(arg, float)
            now += arg  # the wheel waits in monotonic time; the model only sees the new wall
            continue
        if op == "pause":
            paused = model.pause(check, now)
            step(paused, before)
            job_spoke = job_spoke and paused is None  # pausing a paused check changes nothing
        elif op == "resume":
            step(model.resume(check, now), before)
        else:
            kind = model.effective_action(check, op, "GET")
            job_spoke = job_spoke or kind != "log"
            step(model.apply_ping(check, kind, arg if isinstance(arg, str) else None, now), before)
        if check.status == Status.PAUSED and not job_spoke:
            assert check.alert_after is None and model.going_down(check) is None
        expire_due()

    downs = [f for f in flips if f.new == Status.DOWN]
    assert all(f.notifies for f in downs)
    for earlier, later in itertools.pairwise(flips):
        assert earlier.new == later.old  # the flips chain: every change is recorded, in order


def test_a_ping_in_the_repeated_autumn_hour_gets_a_deadline_after_it() -> None:
    """Found by the property above: cronsim, started in the second showing of 02:xx, offered
    the first showing of 02:30, 40 minutes before the ping: the check went down at once."""
    berlin = ZoneInfo("Europe/Berlin")
    ping = datetime(2020, 10, 25, 2, 50, tzinfo=berlin, fold=1).timestamp()
    deadline = deadline_after(Schedule(grace=60, cron="30 2 * * *", tz="Europe/Berlin"), ping)
    assert deadline == datetime(2020, 10, 26, 2, 30, tzinfo=berlin).timestamp()
