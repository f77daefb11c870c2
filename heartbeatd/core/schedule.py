"""When a check's next ping is due: simple periods and cron expressions in an IANA time zone.

Pure functions over epoch seconds; no I/O and no clock. Cron math is cronsim's, which is what
Healthchecks uses, so expressions mean the same thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from heartbeatd.core.durations import format_duration
from heartbeatd.core.limits import MAX_CRON, bounded


@dataclass(frozen=True, slots=True)
class Schedule:
    """Either `period` (simple) or `cron` + `tz` is set; `grace` applies to both."""

    grace: float
    period: float | None = None
    cron: str | None = None
    tz: str = "UTC"

    @property
    def kind(self) -> str:
        return "cron" if self.cron else "simple"


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


def validate_cron(expr: str) -> None:
    """Raise ValueError unless `expr` is a 5-field cron expression cronsim understands."""
    bounded(expr, MAX_CRON)
    if len(expr.split()) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"bad cron expression {expr!r}: {e}") from e


def _cron_times(expr: str, tz: str, after: float) -> CronSim:
    """Occurrences from a second before `after` on, as aware datetimes in the check's zone
    (DST-correct). A second early because datetime rounds to the microsecond: a ping a hair
    before a slot started the count at the slot and skipped it. _next_after drops the extra."""
    local = datetime.fromtimestamp(after - 1, zone(tz))
    return CronSim(expr, local)


def deadline_after(schedule: Schedule, last_ping: float, n: int = 1) -> float | None:
    """The moment the n-th expected ping after `last_ping` is missed (grace not included).

    For cron, a ping early for a slot does not count for it (Healthchecks #830): the slots are
    the ones strictly after the ping. None when a cron expression has no further occurrence.
    """
    if schedule.period is not None:
        return last_ping + n * schedule.period
    assert schedule.cron is not None
    return _cron_deadline(schedule.cron, schedule.tz, last_ping, n)


@lru_cache(maxsize=4096)
def _cron_deadline(expr: str, tz: str, last_ping: float, n: int) -> float | None:
    """deadline_after for a cron schedule, remembered: walking cronsim costs ~50 us, and a
    ping asks twice (when the check goes late, when it goes down), as does each page view."""
    times = _cron_times(expr, tz, last_ping)
    moment = None
    for _ in range(n):
        moment = _next_after(times, last_ping)
        if moment is None:
            return None
    assert moment is not None
    return moment.timestamp()


def _next_after(times: CronSim, after: float) -> datetime | None:
    """The next occurrence that is really later than `after`.

    From a moment in the second showing of an hour the clocks repeat (autumn), cronsim counts
    from the wall time and offers the first showing of the next slot, which came before the
    ping: a deadline in the past, and a false alert. The system cron runs a slot in a repeated
    hour once, at its first showing, so the next slot the job can meet is the one after.
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
    words = CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=UTC)).explain()
    return f"{words} ({schedule.tz})"


UNIT_NAMES = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def in_words(schedule: Schedule) -> str:
    """The schedule as a person says it, for the status page: 'every 5 minutes', 'at 03:00
    every day in Europe/Berlin' (describe() keeps the terse form the CLI and messages use)."""
    if schedule.period is not None:
        return f"every {_spelled(schedule.period)}"
    assert schedule.cron is not None
    words = CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=UTC)).explain()
    return f"{words[:1].lower()}{words[1:]} in {schedule.tz}"


def _spelled(seconds: float) -> str:
    whole = int(seconds)
    if whole == seconds:
        for name, size in UNIT_NAMES:
            if whole % size == 0:
                count = whole // size
                return name if count == 1 else f"{count} {name}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"
