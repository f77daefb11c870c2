"""What a ping means, decided in one place: one pure function of (check, ping, now).

The store reads the check, calls `outcome` and persists what it returns, in one transaction;
it decides nothing itself. The only inputs beyond the three are what cannot be had without
I/O: the body rules' decision when they search (made beside the event loop, see
`pending_search`), the check's metric history for relative assertions (`p95 * 3`), and when
a run the check no longer remembers began (`run_length`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from heartbeatd.core import model, rules
from heartbeatd.core.model import Check, Flip
from heartbeatd.core.rules import email as email_rules
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.core.rules.assertions import History
from heartbeatd.core.rules.body import BodyRules
from heartbeatd.core.rules.email import MessageText

MAX_RUN = 72 * 3600.0  # a longer run has no duration (Healthchecks' MAX_DURATION)
RunStart = Callable[[], float | None]  # when the run a finish closes began, from its pings


@dataclass(frozen=True, slots=True)
class PingIn:
    """A ping as it arrived, whichever client form it came in (web/ping.py, web/ingress.py,
    web/smtp.py)."""

    action: str  # success, start, fail, log
    exit_status: int | None
    rid: str | None
    method: str
    scheme: str
    remote_addr: str
    ua: str
    body: bytes
    body_size: int
    duration: float | None = None  # the run's length as the client measured it (ingress.py)
    metrics: tuple[tuple[str, float], ...] = ()  # (name, value) from the query (ping_metrics.py)
    notes: tuple[str, ...] = ()  # what was ignored in reading them
    json_body: bool = False  # Content-Type: application/json: json_metrics may be read from it
    # An e-mailed ping (web/smtp.py): what its subject and text say, for the e-mail filters.
    email: MessageText | None = None


@dataclass(frozen=True, slots=True)
class BodyDecision:
    """What a check's body rules made of a ping's body, and the rules that decided it."""

    rules: BodyRules
    decided: tuple[str, str]  # BodyRules.decide's (action, why)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to persist for a ping; the check's state has been updated in place."""

    kind: str  # what the ping counts as: success, fail, start, log or ign
    flip: Flip | None  # the state change it caused, if any
    duration: float | None  # the length of the run it closed, if it closed one
    metrics: dict[str, float]
    notes: tuple[str, ...]


def pending_search(check: Check, ping: PingIn, decision: BodyDecision | None) -> BodyRules | None:
    """The check's body rules, when they must search this ping's body before it can be
    judged and `decision` is not theirs: a search runs beside the loop, never in a write."""
    body = judging(check.rules.body, ping)
    if body is None or not body.searches or _ignored(check, ping):
        return None
    return None if decision is not None and decision.rules == body else body


def outcome(
    check: Check,
    ping: PingIn,
    now: float,
    decision: BodyDecision | None = None,
    history: History = lambda name: [],
    run_start: RunStart = lambda: None,
) -> Outcome:
    """Apply `ping` to `check` (updating its state, as model.apply_ping does) and say what
    to store: its effective kind after the check's rules, the flip, the closed run's length."""
    kind = _effective_action(check, ping)
    detail = f"exit status {ping.exit_status}" if ping.exit_status else ""
    reason, metrics, notes = "", dict(ping.metrics), ping.notes
    duration = run_length(check, ping, now, run_start)
    if check.rules and kind != "ign":
        verdict, metrics, notes = _judge(check, kind, ping, duration, decision, history)
        kind, reason, detail = verdict.action, verdict.reason, verdict.detail or detail
    flip = model.apply_ping(check, kind, ping.rid, now, detail, reason)
    finished = kind in ("success", "fail")
    if finished:
        check.last_duration = duration  # also of a run the check no longer remembers
    return Outcome(kind, flip, duration if finished else None, metrics, notes)


def run_length(check: Check, ping: PingIn, now: float, run_start: RunStart) -> float | None:
    """How long the run this ping would close has taken, else the client's own timing.

    The run the check remembers (its last start, when the rid matches) needs no I/O. Runs
    overlap, though: `start?rid=a`, `start?rid=b`, success b, fail a. Then, as Healthchecks'
    Ping.duration does, a finish pairs with the newest earlier start of its rid (without
    rid: the newest start without one) unless a finish of that rid came between: `run_start`
    reads that from the check's pings, asked only for a ping sent as a finish. A run longer
    than MAX_RUN has no duration, as in Healthchecks' ping list.
    """
    length = model.run_duration(check, ping.rid, now)
    if length is None and ping.action in ("success", "fail"):
        started = run_start()
        length = None if started is None else now - started
    if length is not None and length < MAX_RUN:
        return length
    return ping.duration


def _ignored(check: Check, ping: PingIn) -> bool:
    return not check.rules or _effective_action(check, ping) == "ign"


def _effective_action(check: Check, ping: PingIn) -> str:
    return model.effective_action(check, ping.action, ping.method, by_email=bool(ping.email))


def judging(body: BodyRules | None, ping: PingIn) -> BodyRules | None:
    """The body rules if they judge this ping: an HTTP body with filter_http_body, an e-mail
    with filter_subject or filter_body (PROTOCOL.md §1.5: each kind ignores the other's)."""
    if body is None or not (body.email if ping.email is not None else body.http):
        return None
    return body


def decide_body(body: BodyRules, ping: PingIn) -> tuple[str, str]:
    """(action, why) from the rules `judging` found for this ping."""
    if ping.email is not None:
        return email_rules.decide(body, ping.email)
    return body.decide(ping.body)


def _judge(
    check: Check,
    kind: str,
    ping: PingIn,
    duration: float | None,
    decision: BodyDecision | None,
    history: History,
) -> tuple[rules.Verdict, dict[str, float], tuple[str, ...]]:
    """The check's rules applied to a ping: the verdict, and the metrics and notes to store.

    The run's `duration` (run_length) is the metric `duration` unless the ping reported one
    itself; it is stored in the duration column.
    """
    metrics, notes = dict(ping.metrics), ping.notes
    if check.rules.json_metrics and ping.json_body:
        found, more = ping_metrics.from_json(ping.body, check.rules.json_metrics)
        metrics = {**found, **metrics}
        notes += tuple(more)
    measured = dict(metrics)
    if duration is not None:
        measured.setdefault("duration", duration)
    verdict = rules.judge(
        check.rules, kind, _body_verdict(check, ping, decision), measured, history
    )
    return verdict, metrics, notes + ((verdict.note,) if verdict.note else ())


def _body_verdict(
    check: Check, ping: PingIn, decision: BodyDecision | None
) -> tuple[str, str] | None:
    body = judging(check.rules.body, ping)
    if body is None:
        return None
    if decision is not None and decision.rules == body:
        return decision.decided
    return decide_body(body, ping)
