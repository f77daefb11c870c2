"""When a check's next ping is due: simple periods, and cron or systemd OnCalendar expressions in
an IANA time zone.

Pure functions over epoch seconds; no I/O and no clock. Cron math is cronsim's and OnCalendar
math is oncalendar's, the two libraries Healthchecks uses, so expressions mean the same thing in
both. As in Healthchecks, one line of 5 fields is cron and anything else is OnCalendar (one
expression per line), so the one text column and the API's one `schedule` field hold either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from oncalendar import OnCalendar, OnCalendarError

from heartbeatd.core.durations import format_duration
from heartbeatd.core.limits import MAX_CRON, bounded


@dataclass(frozen=True, slots=True)
class Schedule:
    """Either `period` (simple) or `cron` + `tz` is set; `grace` applies to both, `early`
    (seconds a ping may come before a slot and still count for it) to cron only. `cron` holds
    a cron or an OnCalendar expression (`kind` tells which)."""

    grace: float
    period: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    early: float = 0.0

    @property
    def kind(self) -> str:
        return expression_kind(self.cron) if self.cron else "simple"


def expression_kind(expr: str) -> str:
    """'cron' for one line of 5 fields, else 'oncalendar': Healthchecks' rule, and never a
    guess between two readings, since an OnCalendar line has at most 4 parts."""
    if "\n" not in expr.strip() and len(expr.split()) == 5:
        return "cron"
    return "oncalendar"


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone, cached: ZoneInfo lookups show up in profiles of 10,000-check rebuilds."""
    try:
        return ZoneInfo(name)
    # OSError: a name too long to be a file name ("File name too long"), which made a 500
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def validate_tz(name: str) -> None:
    zone(name)


def validate_schedule(expr: str) -> None:
    """Raise ValueError unless `expr` is a cron or an OnCalendar expression that can fire."""
    bounded(expr, MAX_CRON)
    if expression_kind(expr) == "cron":
        validate_cron(expr)
    else:
        validate_oncalendar(expr)


def validate_cron(expr: str) -> None:
    """Raise ValueError unless `expr` is a 5-field cron expression cronsim understands."""
    bounded(expr, MAX_CRON)
    if len(expr.split()) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"bad cron expression {expr!r}: {e}") from e


def validate_oncalendar(expr: str) -> None:
    """Raise ValueError unless every line of `expr` is an OnCalendar expression that fires.

    A line that never fires is refused, as cronsim refuses `0 0 30 2 *`: oncalendar looks for
    its next time up to the year 2200 before it gives up, ~15 ms a line (`*-02,04,06,09,11-31`),
    and that search would be paid on every ping. Healthchecks refuses only when no line fires.
    """
    bounded(expr, MAX_CRON)
    for line in calendar_lines(expr):
        neither = f"{line!r} is neither cron (5 fields) nor OnCalendar"
        if len(line.split()) > 4:
            raise ValueError(f"{neither} (at most 4 parts: weekday, date, time, zone)")
        try:
            next(OnCalendar(line, datetime(2000, 1, 1, tzinfo=UTC)))
        except StopIteration:
            raise ValueError(f"OnCalendar expression {line!r} never fires") from None
        except (OnCalendarError, ValueError) as e:
            raise ValueError(f"{neither}: {e}") from None
        except OSError:  # the last part names a folder of the zone database ("00:00 Europe")
            raise ValueError(f"{neither}: {line.split()[-1]!r} is not a time zone") from None


def calendar_lines(expr: str) -> list[str]:
    """An OnCalendar schedule's expressions, one a line as oncalendar splits them, spaces
    tidied."""
    return [" ".join(line.split()) for line in expr.strip().split("\n")]


def timer_lines(expr: str, tz: str) -> list[str]:
    """An OnCalendar schedule as a .timer's OnCalendar= values: with the check's zone where a
    line names none, since systemd reads a line without one in the host's zone."""
    return [line if _names_a_zone(line) else f"{line} {tz}" for line in calendar_lines(expr)]


def _names_a_zone(line: str) -> bool:
    parts = line.split()
    if len(parts) < 2:
        return False
    try:
        zone(parts[-1])
    except ValueError:
        return False
    return True


def _occurrences(expr: str, tz: str, after: float) -> Iterator[datetime]:
    """Occurrences from a second before `after` on, as aware datetimes in the check's zone
    (DST-correct). A second early because datetime rounds to the microsecond: a ping a hair
    before a slot started the count at the slot and skipped it. _next_after drops the extra.

    OnCalendar keeps systemd's rules for the days the clocks change: a time in the skipped
    spring hour does not happen that day, and one in the repeated autumn hour happens once."""
    local = datetime.fromtimestamp(after - 1, zone(tz))
    if expression_kind(expr) == "cron":
        return CronSim(expr, local)
    return OnCalendar(expr, local)


def deadline_after(schedule: Schedule, last_ping: float, n: int = 1) -> float | None:
    """The moment the n-th expected ping after `last_ping` is missed (grace not included).

    For cron, a ping more than `early` before a slot does not count for it (Healthchecks
    #830): the slots are the ones strictly after the ping plus `early`. So with early = 30 s
    a job in "0 3 * * *" whose ping comes at 02:59:45 has met the 03:00 slot, not missed it.
    None when a cron expression has no further occurrence.
    """
    if schedule.period is not None:
        return last_ping + n * schedule.period
    assert schedule.cron is not None
    return _expression_deadline(schedule.cron, schedule.tz, last_ping + schedule.early, n)


@lru_cache(maxsize=4096)
def _expression_deadline(expr: str, tz: str, last_ping: float, n: int) -> float | None:
    """deadline_after for a cron or OnCalendar schedule, remembered: walking cronsim costs
    ~50 us, and a ping asks twice (when the check goes late, when it goes down), as does each
    page view."""
    times = _occurrences(expr, tz, last_ping)
    moment = None
    for _ in range(n):
        moment = _next_after(times, last_ping)
        if moment is None:
            return None
    assert moment is not None
    return moment.timestamp()


def _next_after(times: Iterator[datetime], after: float) -> datetime | None:
    """The next occurrence that is really later than `after`.

    From a moment in the second showing of an hour the clocks repeat (autumn), cronsim and
    oncalendar count from the wall time and offer the first showing of the next slot, which
    came before the ping: a deadline in the past, and a false alert. cron and systemd run a
    slot in a repeated hour once, at its first showing, so the next slot the job can meet is
    the one after.
    """
    for moment in times:
        if moment.timestamp() > after:
            return moment
    return None


def upcoming(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next `count` expected ping times after `after` (for pages and `check show`)."""
    found = []
    moment = after
    for _ in range(count):
        nxt = deadline_after(schedule, moment)
        if nxt is None:
            break
        found.append(nxt)
        moment = nxt
    return found


def describe(schedule: Schedule) -> str:
    """The schedule in words: 'every 5m' or 'At 03:00 (Europe/Berlin)'."""
    if schedule.period is not None:
        return f"every {format_duration(schedule.period)}"
    assert schedule.cron is not None
    return f"{_expression_words(schedule.cron)} ({schedule.tz})"


UNIT_NAMES = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def in_words(schedule: Schedule) -> str:
    """The schedule as a person says it, for the status page: 'every 5 minutes', 'at 03:00
    every day in Europe/Berlin' (describe() keeps the terse form the CLI and messages use)."""
    if schedule.period is not None:
        return f"every {_spelled(schedule.period)}"
    assert schedule.cron is not None
    words = _expression_words(schedule.cron)
    return f"{words[:1].lower()}{words[1:]} in {schedule.tz}"


def _expression_words(expr: str) -> str:
    """Cron explained ('At 03:00 on Monday'); OnCalendar as written, one line after another
    ('On calendar Mon..Fri 09:00 or Sat 12:00'), since systemd's own words are the clearest."""
    if expression_kind(expr) == "cron":
        return CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC)).explain()
    return "On calendar " + " or ".join(calendar_lines(expr))


def _spelled(seconds: float) -> str:
    whole = int(seconds)
    if whole == seconds:
        for name, size in UNIT_NAMES:
            if whole % size == 0:
                count = whole // size
                return name if count == 1 else f"{count} {name}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"
