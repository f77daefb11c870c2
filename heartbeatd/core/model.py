"""Checks and the rules that move them between states (PROTOCOL.md §1.5, §1.6, §2).

Pure functions over a Check and the time of the decision; store.py applies them inside its
write transactions, so the rules and the SQL stay apart and the rules are tested without a DB.

The state machine, with its thresholds (all 1 by default, which is Healthchecks' behaviour):

- A run is *bad* when it fails (a fail ping, a non-zero exit status, a broken rule: the
  caller has already turned those into `fail`), when a started run outlives its runtime limit
  (a timeout), or when an expected ping is missed. `fail_streak` counts bad runs in a row;
  a success ping ends the streak.
- Not down: a check goes down on the `failures`-th bad run in a row. Below that a fail
  ping leaves it up (a new or paused one becomes up: it has been heard from) and a timed-out
  run only counts; the page says "1 of 3 failures". Silence alone takes it down after
  `max(misses, failures - fail_streak)` missed pings, so `misses` keeps its meaning and a
  missed run counts towards `failures` too. A new check is never taken down by silence.
- Down: a check comes up on the `recoveries`-th success in a row (`ok_streak`); a fail, or a
  success later than its expected time plus grace after the previous one, starts the count
  again. Below that it stays down and the page says "1 of 2 successes".
- `early` (cron only): a ping up to `early` before a slot counts for that slot (schedule.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from heartbeatd.core.durations import format_duration
from heartbeatd.core.limits import MAX_SLUG
from heartbeatd.core.rules import NO_RULES, CheckRules
from heartbeatd.core.schedule import Schedule, deadline_after, timer_lines


class Status(StrEnum):
    """Stored statuses, plus the derived `grace` (shown as "late") and `started`."""

    NEW = "new"
    UP = "up"
    DOWN = "down"
    PAUSED = "paused"
    GRACE = "grace"
    STARTED = "started"


ACTIONS = ("success", "start", "fail", "log")


@dataclass(slots=True)
class Check:
    id: int
    uuid: str
    name: str
    slug: str
    tags: str
    desc: str
    period: float | None
    cron: str | None
    tz: str
    grace: float
    misses: int
    max_runtime: float | None
    manual_resume: bool
    methods: str
    notifiers: tuple[str, ...] | None
    managed: bool
    created: float
    status: str
    last_ping: float | None
    last_start: float | None
    last_start_rid: str | None
    last_duration: float | None
    n_pings: int
    alert_after: float | None
    rules: CheckRules = NO_RULES  # assertions and body rules (rules.py)
    failures: int = 1  # bad runs in a row that take it down (Sentry's failure_issue_threshold)
    recoveries: int = 1  # successes in a row that bring it up (Sentry's recovery_threshold)
    early: float = 0.0  # seconds before a cron slot that a ping still counts for the slot
    fail_streak: int = 0  # bad runs in a row counted so far, while not down
    ok_streak: int = 0  # successes in a row counted so far, while down
    streak_at: float | None = None  # the start of the last timed-out run counted, if newer

    @property
    def schedule(self) -> Schedule:
        return Schedule(
            grace=self.grace, period=self.period, cron=self.cron, tz=self.tz, early=self.early
        )

    @property
    def runtime_limit(self) -> float:
        """How long a started run may take; the grace unless `max_runtime` says otherwise."""
        return self.max_runtime if self.max_runtime is not None else self.grace

    def definition(self) -> CheckDefinition:
        """What a person defined of this check: the API edits it, a reload compares it."""
        return CheckDefinition(
            name=self.name, slug=self.slug, period=self.period, cron=self.cron, tz=self.tz,
            grace=self.grace, tags=tuple(self.tags.split()), desc=self.desc,
            notifiers=self.notifiers, misses=self.misses, max_runtime=self.max_runtime,
            manual_resume=self.manual_resume, methods=self.methods, rules=self.rules,
            failures=self.failures, recoveries=self.recoveries, early=self.early,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """What a person defines about a check (config file, CLI or API); the rest is state."""

    name: str
    slug: str = ""
    period: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    grace: float = 3600.0
    tags: tuple[str, ...] = ()
    desc: str = ""
    notifiers: tuple[str, ...] | None = None
    misses: int = 1
    max_runtime: float | None = None
    manual_resume: bool = False
    methods: str = ""
    rules: CheckRules = NO_RULES  # assertions, JSON metric fields, body keywords (rules.py)
    failures: int = 1
    recoveries: int = 1
    early: float = 0.0


@dataclass(frozen=True, slots=True)
class Flip:
    at: float
    old: str
    new: str
    reason: str
    detail: str = ""

    @property
    def notifies(self) -> bool:
        """Down always alerts; up only when it ends an outage (never new→up or paused→up)."""
        return self.new == Status.DOWN or (self.old == Status.DOWN and self.new == Status.UP)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a check goes down if nothing arrives, and why it would."""

    at: float
    reason: str
    detail: str
    counts_only: bool = False  # a timed-out run below `failures`: counted, not taken down


def slugify(name: str) -> str:
    """The slug a check gets from its name by default: `Nightly Backup` → `nightly-backup`.

    Cut to MAX_SLUG: lowercasing can lengthen a name ("İ" is two characters lowered), and an
    imported job's name has no bound of its own."""
    slug = re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "check"


def effective_action(check: Check, action: str, method: str, by_email: bool = False) -> str:
    """The URL's action, turned into `ign` where the check ignores this ping (§1.5). An
    e-mailed ping has no HTTP method for `methods` to refuse (Healthchecks' smtpd)."""
    if check.methods == "POST" and method != "POST" and not by_email:
        return "ign"
    if check.status == Status.PAUSED and check.manual_resume:
        return "ign"
    return action


def apply_ping(
    check: Check, kind: str, rid: str | None, now: float, detail: str = "", reason: str = ""
) -> Flip | None:
    """Update `check` for a ping of `kind` at `now`; the flip it causes, if any (§1.6).

    Also sets `last_duration` when the ping closes a run, and re-derives `alert_after`.
    `reason` names why a down flip happened when it was not the URL (`assertion`).
    """
    check.n_pings += 1
    flip = None
    if kind == "start":
        check.last_start, check.last_start_rid = now, rid
    elif kind in ("success", "fail"):
        new = _count_run(check, kind == "success", now)
        check.last_ping, check.last_duration, check.streak_at = now, None, None
        if check.last_start is not None:
            if check.last_start_rid == rid:
                check.last_duration = run_duration(check, rid, now)
                check.last_start = check.last_start_rid = None
            elif kind == "fail" or rid is None:
                check.last_start = check.last_start_rid = None
        if new != check.status:
            reason = reason or ("fail" if kind == "fail" else "ping")
            detail = "; ".join(filter(None, (detail, _threshold_met(check, new))))
            flip = Flip(at=now, old=check.status, new=new, reason=reason, detail=detail)
            check.status = new
    check.alert_after = _at(going_down(check))
    return flip


def _count_run(check: Check, ok: bool, now: float) -> Status:
    """Count a finished run in the check's streaks; the status it leaves the check in."""
    if check.status == Status.DOWN:
        check.ok_streak = _ok_streak_before(check, now) + 1 if ok else 0
        if check.ok_streak < check.recoveries:
            return Status.DOWN
        _reset_streaks(check)
        return Status.UP
    if ok:
        check.fail_streak = 0
        return Status.UP
    check.fail_streak += missed_runs(check, now) + 1
    if check.fail_streak < check.failures:
        return Status.UP
    _reset_streaks(check)
    return Status.DOWN


def _threshold_met(check: Check, new: Status) -> str:
    """What the alert says of a threshold above 1 that a ping has just met."""
    if new == Status.DOWN and check.failures > 1:
        return f"{check.failures} failed or missed runs in a row"
    if new == Status.UP and check.status == Status.DOWN and check.recoveries > 1:
        return f"{check.recoveries} successful runs in a row"
    return ""


def _ok_streak_before(check: Check, now: float) -> int:
    """The successes in a row before this one, unless an expected ping was missed since."""
    if check.ok_streak == 0 or check.last_ping is None:
        return 0
    due = deadline_after(check.schedule, check.last_ping)
    return check.ok_streak if due is not None and now <= due + check.grace else 0


def missed_runs(check: Check, now: float) -> int:
    """Expected pings missed (their grace over) since the last run counted, before `now`;
    at most what `failures` can still use, so a long silence costs no long walk."""
    anchor = _anchor(check)
    if check.failures == 1 or anchor is None or check.status != Status.UP:
        return 0
    count = 0
    while count < check.failures:
        due = deadline_after(check.schedule, anchor, count + 1)
        if due is None or due + check.grace >= now:
            break
        count += 1
    return count


def _anchor(check: Check) -> float | None:
    """Where counting expected pings starts: the last ping, or a timed-out run's start."""
    return check.streak_at if check.streak_at is not None else check.last_ping


def run_duration(check: Check, rid: str | None, now: float) -> float | None:
    """How long the run a finishing ping with `rid` closes has taken; None if it closes none."""
    if check.last_start is not None and check.last_start_rid == rid:
        return now - check.last_start
    return None


def going_down(check: Check) -> Deadline | None:
    """The moment `check` goes down unless a ping comes first; None if it cannot.

    A run timeout below `failures` is a moment too (`counts_only`): expire() counts it."""
    if check.status == Status.DOWN:
        return None
    candidates = []
    if check.last_start is not None:
        candidates.append(_run_timeout(check))
    anchor = _anchor(check)
    if check.status == Status.UP and anchor is not None:
        needed = max(check.misses, check.failures - check.fail_streak)
        missed = deadline_after(check.schedule, anchor, needed)
        if missed is not None:
            candidates.append(Deadline(missed + check.grace, "timeout", _missed(check, needed)))
    return min(candidates, key=lambda d: d.at, default=None)


def _run_timeout(check: Check) -> Deadline:
    assert check.last_start is not None
    detail = f"run did not finish within {format_duration(check.runtime_limit)}"
    return Deadline(
        check.last_start + check.runtime_limit,
        "timeout",
        "; ".join(filter(None, (detail, _threshold_met(check, Status.DOWN)))),
        counts_only=check.fail_streak + 1 < check.failures,
    )


def _missed(check: Check, needed: int) -> str:
    if check.fail_streak:
        return f"{check.failures} failed or missed runs in a row"
    return "missed ping" if needed == 1 else f"missed {needed} pings in a row"


def late_at(check: Check) -> float | None:
    """When an up check enters its grace (shown as late) unless a ping comes first."""
    anchor = _anchor(check)
    if check.status != Status.UP or anchor is None or check.last_start is not None:
        return None
    return deadline_after(check.schedule, anchor)


def _at(deadline: Deadline | None) -> float | None:
    return deadline.at if deadline else None


def expire(check: Check, expected_at: float) -> Flip | None:
    """Take `check` down if its going-down moment is still `expected_at`.

    The timer wheel only says that the moment it was armed with has passed; whether that is
    still the check's moment is decided here, against the stored truth. The flip is dated at
    the deadline, not at when we noticed. A run timeout below `failures` is counted instead.
    """
    deadline = going_down(check)
    if deadline is None or abs(deadline.at - expected_at) > 1e-6:
        check.alert_after = _at(deadline)
        return None
    if deadline.counts_only:
        _count_timed_out_run(check)
        return None
    flip = Flip(deadline.at, check.status, Status.DOWN, deadline.reason, deadline.detail)
    check.status = Status.DOWN
    check.alert_after = None
    _reset_streaks(check)
    return flip


def _count_timed_out_run(check: Check) -> None:
    """A started run that outlived its limit, below `failures`: one bad run, and the run is
    given up, so the next expected ping is counted from its start."""
    check.fail_streak += 1
    check.streak_at = check.last_start
    check.last_start = check.last_start_rid = None
    check.alert_after = _at(going_down(check))


def pause(check: Check, now: float) -> Flip | None:
    """Pause; a no-op on a paused check (PROTOCOL.md: newer Healthchecks)."""
    if check.status == Status.PAUSED:
        return None
    flip = Flip(now, check.status, Status.PAUSED, "pause")
    check.status = Status.PAUSED
    check.last_start = check.last_start_rid = None
    check.alert_after = None
    _reset_streaks(check)
    return flip


def resume(check: Check, now: float) -> Flip | None:
    """Back to `new`, waiting for its first ping; None if it was not paused."""
    if check.status != Status.PAUSED:
        return None
    flip = Flip(now, check.status, Status.NEW, "resume")
    check.status = Status.NEW
    check.last_start = check.last_start_rid = check.last_ping = check.alert_after = None
    _reset_streaks(check)
    return flip


def _reset_streaks(check: Check) -> None:
    """A flip or a pause ends every count: what came before is not held against what comes
    after it."""
    check.fail_streak = check.ok_streak = 0
    check.streak_at = None


def status_at(check: Check, now: float) -> Status:
    """What a person should see now: the stored status refined by time (§2.2)."""
    if check.last_start is not None and check.status != Status.DOWN:
        timeout = _run_timeout(check)
        if now < timeout.at:
            return Status.STARTED
        if not timeout.counts_only:
            return Status.DOWN
        check = dataclasses.replace(check)  # what expire() will make of it, left unchanged
        _count_timed_out_run(check)
    anchor = _anchor(check)
    if check.status != Status.UP or anchor is None:
        return Status(check.status)
    down = going_down(check)
    if down is not None and now >= down.at:
        return Status.DOWN
    late = deadline_after(check.schedule, anchor)
    if late is not None and now >= late:
        return Status.GRACE
    return Status.UP


def counting(check: Check, now: float) -> str:
    """Where a threshold's count stands, for people ("1 of 3 failures"); "" when none is
    counting: an on-call engineer wants to see a check one bad run away from alerting."""
    if check.status == Status.DOWN and 0 < check.ok_streak < check.recoveries:
        return f"{check.ok_streak} of {check.recoveries} successes"
    bad = check.fail_streak + missed_runs(check, now) if check.status != Status.DOWN else 0
    if 0 < bad < check.failures:
        return f"{bad} of {check.failures} failures"
    return ""


UNIQUE_KEY_LENGTH = 40


def unique_key(check_uuid: str) -> str:
    """The read-only identifier: sha1 of the first 16 hex digits of the UUID (Healthchecks').
    It names a check in links and to read-only readers without giving away its ping URL."""
    return hashlib.sha1(uuid.UUID(check_uuid).hex[:16].encode()).hexdigest()


def run_example(check: Check, command: str) -> tuple[str, str]:
    """How to run `command` on the check's schedule, and what that is called: a crontab line,
    or for an OnCalendar schedule, which cron cannot say, a systemd timer and its service."""
    if check.schedule.kind != "oncalendar":
        return "crontab", f"{crontab_schedule(check)} {command}"
    assert check.cron is not None
    calendar = "".join(f"OnCalendar={line}\n" for line in timer_lines(check.cron, check.tz))
    return "systemd timer", f"[Timer]\n{calendar}\n[Service]\nExecStart=/bin/sh -c '{command}'"


def label(check: Check) -> str:
    """What logs and messages call a check: its slug, else its name, else its unique key.

    A check made through the v3 API needs neither a slug nor a name; its UUID is never used,
    as it is the secret of the check's ping URL.
    """
    return check.slug or check.name or unique_key(check.uuid)


def crontab_schedule(check: Check) -> str:
    """A crontab schedule that runs as often as the check expects (a guess for odd periods)."""
    if check.cron:
        return check.cron
    seconds = int(check.period or 0)
    if seconds == 60:
        return "* * * * *"
    if seconds < 3600 and seconds % 60 == 0 and 3600 % seconds == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds < 86400 and seconds % 3600 == 0 and 86400 % seconds == 0:
        return f"0 */{seconds // 3600} * * *"
    if seconds == 604800:
        return "0 3 * * 0"
    return "0 3 * * *"
