"""Checks a client declares: a job's first ping (or a Sentry check-in's monitor_config) sets up
its own monitoring, and a later one that says otherwise changes it.

Only by slug under the instance ping key, so only whoever holds the key can define checks.
A check declared in the config file stays as the file says: `declare` raises Conflict when a
client declares it otherwise (the ping form refuses the ping with 409; Sentry logs and goes on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from heartbeatd.core import fields
from heartbeatd.core.errors import BadRequest, Conflict, HeartbeatdError
from heartbeatd.core.model import Check, CheckDefinition
from heartbeatd.store.base import AUTO_GRACE, AUTO_PERIOD
from heartbeatd.web.keys import CHECKS

# A ping's query parameters that define its check, read only with ?create=1 on a slug URL.
DEFINITION_PARAMS = ("period", "cron", "tz", "grace", "max_runtime", "misses")


Want = Callable[[Check | None], CheckDefinition]  # a check (None: none yet) as it should be


class Unchanged(HeartbeatdError):
    """The check already is what the client declares: nothing to write."""


def declared_changes(query: Mapping[str, str]) -> dict[str, Any]:
    """The check a ping's query declares, as CheckDefinition fields; BadRequest naming the
    parameter when a value is one the check's field does not take (core/fields.py)."""
    changes: dict[str, Any] = {}
    try:
        for param in DEFINITION_PARAMS:
            if param in query:
                changes[param] = _value(param, query[param])
    except ValueError as e:
        raise BadRequest(f"{param}: {e}") from None
    if "period" in changes and "cron" in changes:
        raise BadRequest("give period or cron, not both")
    if "period" in changes:
        changes["cron"] = None
    elif "cron" in changes:
        changes["period"] = None
    return changes


def _value(param: str, text: str) -> Any:
    if param in ("period", "grace", "max_runtime"):
        return fields.duration(text)
    if param == "cron":
        return fields.cron(text)
    if param == "tz":
        return fields.tz(text)
    if not text.strip().isdigit():
        raise ValueError(f"expected a whole number, got {text[:40]!r}")
    return fields.misses(int(text))


def with_changes(slug: str, changes: Mapping[str, Any]) -> Want:
    """What a check becomes with `changes`; a new one named by its slug, with the defaults
    of a check a ?create=1 ping makes."""

    def want(existing: Check | None) -> CheckDefinition:
        if existing is None:
            base = CheckDefinition(name=slug, slug=slug, period=AUTO_PERIOD, grace=AUTO_GRACE)
        else:
            base = existing.definition()
        return replace(base, **changes)

    return want


async def declare(request: web.Request, slug: str, want: Want, actor: str) -> bool:
    """Create the check `slug` as `want` makes it, or change it to that; True when created.
    Nothing is written when it already is that; Conflict for a config-file check it is not."""

    def build(existing: Check | None) -> CheckDefinition:
        wanted = want(existing)
        if existing is not None and wanted == existing.definition():
            raise Unchanged()
        if existing is not None and existing.managed:
            raise Conflict(f"check {slug} is declared in the config file, otherwise than this")
        return wanted

    try:
        _, created = await request.app[CHECKS].upsert({"slug": slug}, build, actor)
    except Unchanged:
        return False
    return created
