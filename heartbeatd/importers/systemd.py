"""`heartbeatd import systemd-timers`: one check per timer that `systemctl list-timers` shows.

A timer's schedule comes from its OnCalendar= (as `systemctl show -p TimersCalendar` prints it,
normalized): as cron when it has a cron equivalent, else as the OnCalendar lines themselves;
for monotonic timers and calendar events oncalendar cannot read, from the gap between its
NEXT and LAST runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from heartbeatd.core import fields
from heartbeatd.core.durations import format_duration
from heartbeatd.core.model import CheckDefinition, slugify
from heartbeatd.core.schedule import calendar_lines, validate_oncalendar
from heartbeatd.importers.crontab import columns

COLUMNS = ("NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
NICKNAMES = {
    "minutely": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
    "quarterly": "0 0 1 1,4,7,10 *",
    "semiannually": "0 0 1 1,7 *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}


@dataclass(frozen=True, slots=True)
class Timer:
    unit: str
    activates: str
    next: datetime | None
    last: datetime | None


@dataclass(frozen=True, slots=True)
class TimerProposal:
    timer: Timer
    slug: str
    cron: str | None
    period: float | None
    tz: str
    source: str  # where the schedule came from, for the table

    def definition(self, grace: float) -> CheckDefinition:
        return CheckDefinition(
            name=self.slug, slug=self.slug, cron=self.cron, period=self.period, tz=self.tz,
            grace=grace, desc=f"systemd timer {self.timer.unit} ({self.timer.activates})",
        )  # fmt: skip


def parse_list_timers(text: str) -> list[Timer]:
    """The rows of `systemctl list-timers --all --no-pager`, cut at the header's columns."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[:1] == ["NEXT"]), None)
    if header is None:
        raise ValueError("no NEXT/LEFT/LAST/PASSED/UNIT/ACTIVATES header: not list-timers output")
    starts = [lines[header].find(name) for name in COLUMNS]
    if -1 in starts:
        raise ValueError(f"the header lacks a column: expected {' '.join(COLUMNS)}")
    timers = []
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        unit, activates = cells[4], cells[5]
        if unit.endswith(".timer"):
            timers.append(Timer(unit, activates, _moment(cells[0]), _moment(cells[2])))
    return timers


def _moment(cell: str) -> datetime | None:
    match = _TIMESTAMP.search(cell)
    return datetime.fromisoformat(match[1]) if match else None


def calendar_specs(show_output: str) -> list[str]:
    """OnCalendar= expressions from `systemctl show -p TimersCalendar UNIT`."""
    return [spec.strip() for spec in re.findall(r"OnCalendar=([^;}]+)", show_output)]


def calendar_to_cron(spec: str) -> tuple[str, str | None] | None:
    """(cron, zone or None) for a normalized OnCalendar= expression cron can say, else None.

    Not convertible: seconds other than 0, a year, `~` (days from the month's end), and a
    weekday together with days of the month (systemd wants both, cron either).
    """
    words = spec.split()
    if len(words) == 1 and words[0].lower() in NICKNAMES:
        return NICKNAMES[words[0].lower()], None
    # The normalized form: [weekdays] year-month-day hour:minute:second [zone]
    zone = words.pop() if len(words) >= 3 and ":" in words[-2] else None
    weekdays = words.pop(0) if len(words) == 3 else "*"
    if len(words) != 2:
        return None
    date, time = words
    date_parts, time_parts = date.split("-"), time.split(":")
    if len(date_parts) != 3 or len(time_parts) != 3 or date_parts[0] != "*":
        return None
    if time_parts[2] not in ("00", "0"):
        return None
    parts = [
        _field(time_parts[1], 59),
        _field(time_parts[0], 23),
        _field(date_parts[2], 31),
        _field(date_parts[1], 12),
        _weekday_field(weekdays),
    ]
    if None in parts or (parts[2] != "*" and parts[4] != "*"):
        return None
    cron = " ".join(f for f in parts if f is not None)
    try:
        fields.cron(cron)
        if zone:
            fields.tz(zone)
    except ValueError:
        return None
    return cron, zone


def _field(value: str, high: int) -> str | None:
    parts = []
    for part in value.split(","):
        if match := re.fullmatch(r"(\*|\d+)/(\d+)", part):
            start = "0" if match[1] == "*" else str(int(match[1]))
            parts.append(f"{start}-{high}/{int(match[2])}")
        elif match := re.fullmatch(r"(\d+)\.\.(\d+)", part):
            parts.append(f"{int(match[1])}-{int(match[2])}")
        elif part == "*" or part.isdigit():
            parts.append(part if part == "*" else str(int(part)))
        else:
            return None
    return ",".join(parts)


def _weekday_field(value: str) -> str | None:
    if value == "*":
        return "*"
    parts = []
    for part in value.lower().split(","):
        ends = part.split("..")
        if len(ends) > 2 or any(end not in _WEEKDAYS for end in ends):
            return None
        numbers = [_WEEKDAYS[end] for end in ends]
        if numbers != sorted(numbers):
            return None
        parts.append("-".join(str(n) for n in numbers))
    return ",".join(parts)


def propose_timers(
    timers: list[Timer], calendars: Mapping[str, list[str]], tz: str
) -> tuple[list[TimerProposal], list[tuple[str, str]]]:
    """One check per timer, and (unit, why) for the timers without a schedule to watch."""
    proposals, skipped, taken = [], [], set()
    for timer in timers:
        slug = slugify(re.sub(r"\.(service|target)$", "", timer.activates or timer.unit))
        if slug in taken:
            skipped.append((timer.unit, f"another timer activates {timer.activates}"))
            continue
        proposal = _proposal(timer, slug, calendars.get(timer.unit, []), tz)
        if isinstance(proposal, str):
            skipped.append((timer.unit, proposal))
        else:
            taken.add(slug)
            proposals.append(proposal)
    return proposals, skipped


def _proposal(timer: Timer, slug: str, specs: list[str], tz: str) -> TimerProposal | str:
    if len(specs) == 1 and (converted := calendar_to_cron(specs[0])):
        cron, zone = converted
        return TimerProposal(timer, slug, cron, None, zone or tz, f"OnCalendar={specs[0]}")
    if specs and (calendar := _readable_calendar(specs)):
        return TimerProposal(timer, slug, calendar, None, tz, f"OnCalendar={'; '.join(specs)}")
    if timer.next is None or timer.last is None:
        return (
            "no OnCalendar= heartbeatd can read, and no NEXT and LAST run to measure a period from"
        )
    period = round((timer.next - timer.last).total_seconds() / 60) * 60.0
    if period < 60:
        return "NEXT and LAST are less than a minute apart"
    return TimerProposal(timer, slug, None, period, tz, "NEXT - LAST (approximate)")


def _readable_calendar(specs: list[str]) -> str | None:
    """The timer's OnCalendar= lines as one OnCalendar schedule, if oncalendar reads them all:
    exact where cron cannot say them (a weekday and a day, seconds, several lines)."""
    calendar = "\n".join(specs)
    try:
        validate_oncalendar(calendar)
    except ValueError:
        return None
    return calendar


def drop_in(proposal: TimerProposal) -> list[str]:
    """The `systemctl edit` drop-in that makes the timer's service report to its check."""
    service, slug = proposal.timer.activates, proposal.slug
    return [
        f"# /etc/systemd/system/{service}.d/heartbeatd.conf ({proposal.timer.unit})",
        "[Unit]",
        f"OnSuccess=heartbeatd-ping@{slug}.service",
        f"OnFailure=heartbeatd-ping@{slug}.service",
        "[Service]",
        "EnvironmentFile=/etc/heartbeatd/ping.env",
        "ExecStartPre=-/usr/bin/curl -fsS -m 10 --retry 5 -o /dev/null "
        f"${{HEARTBEATD_SITE_URL}}/ping/${{HEARTBEATD_PING_KEY}}/{slug}/start",
        "",
    ]


def table(proposals: list[TimerProposal], skipped: list[tuple[str, str]]) -> list[str]:
    rows = [("TIMER", "SLUG", "SCHEDULE", "TZ", "FROM")]
    for p in proposals:
        schedule = (
            "; ".join(calendar_lines(p.cron))
            if p.cron
            else f"every {format_duration(p.period or 0)}"
        )
        rows.append((p.timer.unit, p.slug, schedule, p.tz, p.source))
    return columns(rows) + [f"skipped {unit}: {why}" for unit, why in skipped]
