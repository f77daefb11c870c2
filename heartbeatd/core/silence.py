"""Silences: maintenance windows from the config and snoozes set by a check's own ping URL.

A silence mutes alerts, never monitoring: checks still flip and pings are still recorded,
but a flip's notifications are held while it lasts (store/silences.py decides what is told
when it ends). This module answers only "is this check silenced at t, by what, until when",
as pure functions over epoch seconds with bounded work: a window search walks at most
MAX_CHAINED cron starts, so no expression (`* * * * *` with a day's duration) makes it spin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from heartbeatd.core.model import Check
from heartbeatd.core.schedule import Schedule, deadline_after, zone

MAX_WINDOW = 31 * 86400.0  # a [[silence]]'s duration: a month of maintenance at most
MAX_SNOOZE = 7 * 86400.0  # a snooze by ping URL, CLI or API: a week at most
MAX_REASON = 200  # characters of a snooze's reason
MAX_CHAINED = 64  # back-to-back cron windows followed to find where a silence really ends
SNOOZE = "snooze"  # the name a snooze is shown and told under


@dataclass(frozen=True, slots=True)
class Silence:
    """A `[[silence]]` table: `cron` (recurring starts) or `start` (one-off, epoch seconds),
    each lasting `duration`; it holds the checks with one of `tags` or a slug in `checks`,
    and every check when both are empty."""

    name: str
    duration: float
    cron: str | None = None
    start: float | None = None
    tz: str = "UTC"
    tags: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()

    def covers(self, check: Check) -> bool:
        if not self.tags and not self.checks:
            return True
        return check.slug in self.checks or bool(set(self.tags) & set(check.tags.split()))

    def window_at(self, t: float) -> tuple[float, float] | None:
        """(start, end) of the window that holds `t`, windows that touch merged; else None."""
        if self.start is not None:
            end = self.start + self.duration
            return (self.start, end) if self.start <= t < end else None
        assert self.cron is not None
        schedule = Schedule(grace=0.0, cron=self.cron, tz=self.tz)
        # The earliest start that can still hold t: the first one after t - duration.
        first = deadline_after(schedule, t - self.duration)
        if first is None or first > t:
            return None
        end = first + self.duration
        for _ in range(MAX_CHAINED):
            following = deadline_after(schedule, end - self.duration)
            if following is None or following > end:
                break
            end = following + self.duration
        return first, end


@dataclass(frozen=True, slots=True)
class Hold:
    """What holds a check's alerts now, and until when."""

    name: str
    until: float


@dataclass(frozen=True, slots=True)
class Snooze:
    """A check's snooze as stored: one per check, a new one replaces it."""

    check_id: int
    until: float
    reason: str
    created: float

    @property
    def name(self) -> str:
        return f"{SNOOZE}: {self.reason}" if self.reason else SNOOZE


def holding(
    check: Check, t: float, silences: Iterable[Silence], snooze: Snooze | None = None
) -> Hold | None:
    """What silences `check` at `t`: of all that do, the one that lasts longest (so a hold
    ends once, when the last of them does); None when nothing does."""
    return strongest(check, t, on_at((s for s in silences if s.covers(check)), t), snooze)


def on_at(silences: Iterable[Silence], t: float) -> list[tuple[Silence, float]]:
    """The silences whose window holds `t`, with its end: computed once for a page of many
    checks, as a cron window costs a cronsim walk."""
    windows = ((silence, silence.window_at(t)) for silence in silences)
    return [(silence, window[1]) for silence, window in windows if window is not None]


def strongest(
    check: Check, t: float, windows: Iterable[tuple[Silence, float]], snooze: Snooze | None
) -> Hold | None:
    """holding() over windows already known to be on at `t` (on_at)."""
    holds = [Hold(snooze.name, snooze.until)] if snooze and snooze.until > t else []
    holds += [Hold(silence.name, end) for silence, end in windows if silence.covers(check)]
    return max(holds, key=lambda hold: hold.until, default=None)


def local_start(text: str, tz: str) -> float:
    """Epoch seconds of `2026-12-24T18:00`, a wall time in `tz`; ValueError if unreadable."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a local time like '2026-12-24T18:00', got {text!r}") from None
    if moment.tzinfo is not None:
        raise ValueError(f"write the time without an offset; `tz` gives the zone, got {text!r}")
    return moment.replace(tzinfo=zone(tz)).timestamp()


def listed(silences: Iterable[Silence], snoozes: Iterable[tuple[Check, Snooze]], now: float
           ) -> list[dict[str, object]]:  # fmt: skip
    """Every silence as the API and `silence list` show it: config windows first (`ends`:
    epoch seconds when one is on now, else None), then snoozes, soonest to end first."""
    shown: list[dict[str, object]] = []
    for silence in silences:
        window = silence.window_at(now)
        shown.append({
            "kind": "window", "name": silence.name, "cron": silence.cron,
            "start": silence.start, "duration": silence.duration, "tz": silence.tz,
            "tags": list(silence.tags), "checks": list(silence.checks),
            "ends": window[1] if window else None,
        })  # fmt: skip
    for check, snooze in sorted(snoozes, key=lambda pair: pair[1].until):
        shown.append({
            "kind": SNOOZE, "name": snooze.name, "check": check.uuid, "slug": check.slug,
            "reason": snooze.reason, "created": snooze.created, "ends": snooze.until,
        })  # fmt: skip
    return shown
