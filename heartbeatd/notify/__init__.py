"""The notifier extension point: how an alert leaves heartbeatd.

A notifier kind is a class registered under the `heartbeatd.notifiers` entry point group (ours
are registered the same way in pyproject.toml). The dispatcher hands it an Event; it sends it or
raises NotifyError. It never touches the database: the dispatcher records every outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from heartbeatd.core.config import Config
from heartbeatd.core.durations import format_elapsed
from heartbeatd.core.model import Check, Flip, label, unique_key
from heartbeatd.core.rules.assertions import show_all
from heartbeatd.core.schedule import describe
from heartbeatd.notify.options import OptionError

GROUP = "heartbeatd.notifiers"


class NotifyError(Exception):
    """Sending failed. `permanent` stops retries (a 404 webhook URL will not start working);
    `retry_after` is how long the service asked us to wait, in seconds, so the dispatcher does
    not retry a rate limit sooner than it would be lifted."""

    def __init__(
        self, message: str, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Event:
    """One notification, with what a person needs to act on it.

    `kind` is "down", "up", or "test" (from `heartbeatd notify test`).
    """

    kind: str  # down, up, late, repeat or test
    check: Check
    flip: Flip
    site_url: str
    flip_id: int = 0
    outbox_id: int = 0  # the notification's own row; 0 for a test message
    down_since: float | None = None  # for "up": when the outage began
    last_body: bytes = b""
    exit_status: int | None = None  # of the last ping, when it carried one
    last_metrics: Mapping[str, float] = field(default_factory=dict)  # of the last ping (issue 8)
    now: float = 0.0  # when it is sent: reminders say how long the outage has lasted
    heartbeatd_down: tuple[float, float] | None = None  # heartbeatd's own last downtime
    silence: str | None = None  # held while this silence lasted, told at its end

    @property
    def ping_url(self) -> str:
        return f"{self.site_url}/ping/{self.check.uuid}"

    @property
    def check_url(self) -> str:
        """The check's page by its unique_key: a message reaches chat channels, phones and
        public ntfy topics, and a UUID there would be the check's ping URL."""
        return f"{self.site_url}/checks/{unique_key(self.check.uuid)}"

    @property
    def key(self) -> str:
        """The same for every attempt at this notification and different for every other one
        (each reminder too): an idempotency key for services that de-duplicate."""
        if not self.outbox_id:
            return f"heartbeatd-test-{self.now:.6f}"
        return f"heartbeatd-{self.outbox_id}"

    @property
    def is_problem(self) -> bool:
        """Down and its reminders: shown as urgent by notifiers that can."""
        return self.kind in ("down", "repeat")

    @property
    def check_name(self) -> str:
        """The check as a message names it: its name, else what the log calls it."""
        return self.check.name or label(self.check)

    @property
    def summary(self) -> str:
        name = self.check_name
        why = f" ({self.flip.detail})" if self.flip.detail else f" ({self.flip.reason})"
        if self.flip.reason == "assertion":  # the job ran but broke `bytes > 0 (got 0)`
            why = f" (assertion: {self.flip.detail})"
        if self.kind == "test":
            return f"Test notification from heartbeatd for {name}"
        if self.kind == "down":
            return f"{name} is DOWN{why}{self._during}"
        if self.kind == "repeat":
            return f"{name} is still DOWN{why}, for {format_elapsed(self.now - self.flip.at)}"
        if self.kind == "late":
            down_at = _when(self.check.alert_after)
            return f"{name} is LATE: no ping since {_when(self.check.last_ping)}, down at {down_at}"
        lasted = ""
        if self.down_since is not None:
            lasted = f" after {format_elapsed(self.flip.at - self.down_since)} down"
        return f"{name} is UP again{lasted}{self._during}"

    @property
    def _during(self) -> str:
        """For an alert held by a silence and told at its end: "down since 03:12 UTC,
        during Sunday patching", so the person knows it is not news of this minute."""
        if self.silence is None:
            return ""
        if self.kind == "down":
            return f", down since {_when(self.flip.at)}, during {self.silence}"
        return f", during {self.silence}"

    def output_tail(self, limit: int = 500) -> str:
        """The end of the last ping's body (the job's output), as text."""
        if limit <= 0:
            return ""
        return self.last_body[-limit:].decode("utf-8", "replace")

    @property
    def lost_pings_note(self) -> str:
        """For an alert about a silence that heartbeatd was itself down for part of: the job
        may well have pinged then, so the person should look before fixing anything."""
        if self.heartbeatd_down is None or self.kind not in ("down", "repeat", "late"):
            return ""
        if self.kind != "late" and self.flip.reason != "timeout":
            return ""  # the job said it failed: the downtime explains nothing
        away_from, away_to = self.heartbeatd_down
        silent_from = self.check.last_ping or self.check.created
        silent_to = self.flip.at if self.kind == "down" else self.now
        if silent_from >= away_to or silent_to <= away_from:
            return ""
        return (f"heartbeatd itself was down from {_when(away_from)} to {_when(away_to)}; "
                "pings sent then were lost.")  # fmt: skip

    def text(self, body_limit: int = 500) -> str:
        """A plain-text message body: what happened, when, the schedule, the output, a link."""
        c = self.check
        lines = [self.summary, ""]
        if c.desc:
            lines.append(c.desc)
        lines.append(f"Schedule: {describe(c.schedule)}, grace {format_elapsed(c.grace)}")
        lines.append(f"Last ping: {_when(c.last_ping)}")
        if self.last_metrics:  # beside a broken assertion, the other numbers of that run
            lines.append(f"Last metrics: {show_all(self.last_metrics)}")
        if self.is_problem:
            lines.append(f"Down since: {_when(self.flip.at)}")
        if self.silence is not None:
            lines.append(f"Held during: {self.silence} (told when it ended)")
        if c.tags:
            lines.append(f"Tags: {c.tags}")
        if self.lost_pings_note:
            lines += ["", self.lost_pings_note]
        tail = self.output_tail(body_limit).strip()
        if tail:
            lines += ["", "Last output:", tail]
        lines += ["", self.check_url]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        c = self.check
        return {
            "event": self.kind,
            "summary": self.summary,
            "key": self.key,
            "check": {
                "uuid": c.uuid,
                "name": c.name,
                "slug": c.slug,
                "tags": c.tags,
                "desc": c.desc,
                "status": str(self.flip.new),
                "schedule": describe(c.schedule),
                "grace": c.grace,
                "last_ping": iso(c.last_ping),
                "last_duration": c.last_duration,
                "n_pings": c.n_pings,
                "ping_url": self.ping_url,
                "url": self.check_url,
            },
            "flip": {
                "at": iso(self.flip.at),
                "old_status": self.flip.old,
                "new_status": self.flip.new,
                "reason": self.flip.reason,
                "detail": self.flip.detail,
            },
            "down_since": iso(self.down_since),
            "last_body_tail": self.output_tail(1000),
            "last_metrics": dict(self.last_metrics),
            "silence": self.silence,
        }


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Notifier(Protocol):
    name: str
    timeout: float

    async def send(self, event: Event) -> None:
        """Deliver the event, or raise NotifyError."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


class NotifierKind(Protocol):
    def __call__(self, name: str, options: Mapping[str, object]) -> Notifier:
        """Build a notifier from its config table; raise OptionError for a bad option."""


def notifier_kind(name: str) -> NotifierKind | None:
    """The class registered under `name`, imported only when a config uses it."""
    for ep in entry_points(group=GROUP, name=name):
        try:
            kind: NotifierKind = ep.load()  # typed Any: whatever the entry point names
            return kind
        except ImportError as e:
            raise OptionError("type", f"the {name} notifier cannot load: {e}") from e
    return None


def build_notifiers(config: Config) -> dict[str, Notifier]:
    """Every notifier the config declares, validated now so mistakes stop start-up."""
    built: dict[str, Notifier] = {}
    for spec in config.notifiers:
        try:
            kind = notifier_kind(spec.type)
            if kind is None:
                known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP)))
                raise OptionError("type", f"unknown type {spec.type!r}; known: {known}")
            built[spec.name] = kind(spec.name, spec.options)
        except OptionError as e:
            raise config.notifier_error(spec, e.key, e.message) from e
    return built


def make_router(config: Config) -> Callable[[Check, str], Sequence[str]]:
    """Which notifiers a check's flips go to: its own list, else the defaults and tag routes."""
    defaults = [n.name for n in config.notifiers if n.default]
    by_tag = [(n.name, set(n.tags)) for n in config.notifiers if n.tags and not n.default]

    wants = {n.name: set(n.events) for n in config.notifiers}

    def route(check: Check, event: str) -> Sequence[str]:
        if check.notifiers is not None:
            names = list(check.notifiers)
        else:
            tags = set(check.tags.split())
            names = defaults + [name for name, wanted in by_tag if wanted & tags]
        return [name for name in names if event in wants.get(name, ("down", "up"))]

    return route
