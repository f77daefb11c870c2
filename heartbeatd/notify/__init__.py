"""The notifier extension point: how an alert leaves heartbeatd.

A notifier kind is a class registered under the `heartbeatd.notifiers` entry point group (ours
are registered the same way in pyproject.toml). The dispatcher hands it an Event; it sends it or
raises NotifyError. It never touches the database: the dispatcher records every outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from heartbeatd.config import Config
from heartbeatd.durations import format_elapsed
from heartbeatd.model import Check, Flip
from heartbeatd.schedule import describe

GROUP = "heartbeatd.notifiers"


class NotifyError(Exception):
    """Sending failed. `permanent` stops retries (a 404 webhook URL will not start working)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class OptionError(Exception):
    """A notifier option is wrong; the loader turns it into FILE:LINE: key: message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Event:
    """A down or up notification, with what a person needs to act on it."""

    kind: str  # "down" or "up"
    check: Check
    flip: Flip
    ping_url: str
    down_since: float | None = None  # for "up": when the outage began
    last_body: bytes = b""

    @property
    def summary(self) -> str:
        name = self.check.name or self.check.slug
        if self.kind == "down":
            why = f" ({self.flip.detail})" if self.flip.detail else f" ({self.flip.reason})"
            return f"{name} is DOWN{why}"
        lasted = ""
        if self.down_since is not None:
            lasted = f" after {format_elapsed(self.flip.at - self.down_since)} down"
        return f"{name} is UP again{lasted}"

    def as_dict(self) -> dict[str, Any]:
        c = self.check
        return {
            "event": self.kind,
            "summary": self.summary,
            "check": {
                "uuid": c.uuid,
                "name": c.name,
                "slug": c.slug,
                "tags": c.tags,
                "desc": c.desc,
                "schedule": describe(c.schedule),
                "grace": c.grace,
                "last_ping": iso(c.last_ping),
                "last_duration": c.last_duration,
                "n_pings": c.n_pings,
                "ping_url": self.ping_url,
            },
            "flip": {
                "at": iso(self.flip.at),
                "old_status": self.flip.old,
                "new_status": self.flip.new,
                "reason": self.flip.reason,
                "detail": self.flip.detail,
            },
            "down_since": iso(self.down_since),
            "last_body_tail": self.last_body[-1000:].decode("utf-8", "replace"),
        }


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


def notifier_kinds() -> dict[str, NotifierKind]:
    return {ep.name: ep.load() for ep in entry_points(group=GROUP)}


def build_notifiers(config: Config) -> dict[str, Notifier]:
    """Every notifier the config declares, validated now so mistakes stop start-up."""
    kinds = notifier_kinds()
    built: dict[str, Notifier] = {}
    for spec in config.notifiers:
        kind = kinds.get(spec.type)
        if kind is None:
            known = ", ".join(sorted(kinds))
            raise config.notifier_error(spec, "type", f"unknown type {spec.type!r}; known: {known}")
        try:
            built[spec.name] = kind(spec.name, spec.options)
        except OptionError as e:
            raise config.notifier_error(spec, e.key, e.message) from e
    return built


def make_router(config: Config) -> Any:
    """Which notifiers a check's flips go to: its own list, else the defaults and tag routes."""
    defaults = [n.name for n in config.notifiers if n.default]
    by_tag = [(n.name, set(n.tags)) for n in config.notifiers if n.tags and not n.default]

    def route(check: Check) -> Sequence[str]:
        if check.notifiers is not None:
            return check.notifiers
        tags = set(check.tags.split())
        return defaults + [name for name, wanted in by_tag if wanted & tags]

    return route


def option(options: Mapping[str, object], key: str, kind: type, default: Any = None) -> Any:
    """One option of the expected type, or OptionError naming it."""
    value = options.get(key, default)
    if value is None or (kind is float and isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise OptionError(key, f"expected {kind.__name__}, got {type(value).__name__}")
    return value
