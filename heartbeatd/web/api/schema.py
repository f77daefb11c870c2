"""The management API's JSON: checks, pings and flips as Healthchecks writes them, and the
validation of what clients send (PROTOCOL.md §4.3, §4.4).

Validation is strict, as Healthchecks' is: no coercion, JSON null is refused, and the first
problem becomes a 400 whose text names the field (`json validation error: timeout is too
small`), so a client's author knows what to fix. `schedule` is cron (one line of 5 fields) or
systemd OnCalendar (anything else, one expression per line), told apart as Healthchecks does.
heartbeatd's own differences: 1 s is the smallest timeout and grace, and an OnCalendar line that
never fires is refused even beside one that does. The keyword filters (`success_kw`,
`filter_http_body`, `filter_subject`, ...) are body_rules.py's, and a check's other rules
(assertions) are kept across updates.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from heartbeatd.core import fields, limits, model, rules
from heartbeatd.core.errors import BadRequest
from heartbeatd.core.model import Check, CheckDefinition, Status, unique_key
from heartbeatd.core.rules import CheckRules
from heartbeatd.core.rules import body as body_rules
from heartbeatd.notify import iso
from heartbeatd.store import PingRecord

DEFAULT_TIMEOUT, DEFAULT_GRACE = 86400, 3600
UNIQUE_FIELDS = ("name", "slug", "tags", "timeout", "grace")
# Keyword filters on HTTP ping bodies and e-mails (body_rules.py); the `_re` forms are
# heartbeatd's own.
BODY_TEXT_FIELDS = ("start_kw", "success_kw", "failure_kw", "start_re", "success_re",
                    "failure_re")  # fmt: skip
BODY_FLAG_FIELDS = ("filter_http_body", *body_rules.EMAIL_SWITCHES, "filter_default_fail")
# Healthchecks' deprecated fields, and the keywords each stands for, matched in the subject.
LEGACY_SUBJECT_FIELDS = {"subject": "success_kw", "subject_fail": "failure_kw"}
# A fixed namespace, so a notifier's channel id is the same on every start and every instance.
CHANNEL_NAMESPACE = uuid.UUID("5f1b7c3e-2d4a-4e8b-9c61-0a7d3e2f8b14")


def fail(message: str) -> BadRequest:
    return BadRequest(f"json validation error: {message}")


def _string(validate: Callable[[str], Any] | None = None) -> Callable[[str, object], str]:
    """A JSON string, checked by its field's validator (core/fields.py) if it has one."""

    def parse(field: str, value: object) -> str:
        if not isinstance(value, str):
            raise fail(f"{field} is not a string")
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:  # JSON's "\ud800": no text can be stored with it
                raise fail(f"{field} is not valid Unicode (a lone surrogate)") from None
        if validate is not None:
            _valid(field, validate, value)
        return value

    return parse


def _valid(field: str, validate: Callable[[Any], Any], value: object) -> None:
    try:
        validate(value)
    except fields.FieldError as e:
        raise fail(f"{field} {e.api}") from None


def _boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise fail(f"{field} is not a boolean")
    return value


def _number(validate: Callable[[int], Any]) -> Callable[[str, object], int]:
    """A JSON whole number (Healthchecks takes no 60.5 and no "60"), checked by `validate`."""

    def parse(field: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail(f"{field} is not a number")
        _valid(field, validate, value)
        return value

    return parse


_seconds = _number(fields.seconds)


def _max_runtime(field: str, value: object) -> int | None:
    return None if value is None else _seconds(field, value)


def _unique(field: str, value: object) -> list[str]:
    if not isinstance(value, list):
        raise fail(f"{field} is not an array")
    for item in value:
        if item not in UNIQUE_FIELDS:
            raise fail(f"an item in '{field}' has unexpected value")
    return list(value)


def _methods(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{field} has unexpected value")
    _valid(field, fields.methods, value)
    return value


def _bounded(limit: int) -> Callable[[str], str]:
    """A free text field's only rule: its length (limits.py)."""

    def validate(text: str) -> str:
        try:
            return limits.bounded(text, limit)
        except ValueError as e:
            raise fields.FieldError(str(e)) from None

    return validate


FIELDS: dict[str, Callable[[str, object], Any]] = {
    "name": _string(fields.name),
    "slug": _string(fields.slug),
    "tags": _string(lambda text: fields.tags(text.split())),
    "desc": _string(fields.desc),
    "timeout": _seconds,
    "grace": _seconds,
    "schedule": _string(fields.cron),
    "tz": _string(fields.tz),
    "manual_resume": _boolean,
    "methods": _methods,
    "channels": _string(_bounded(limits.MAX_CHANNELS)),
    "unique": _unique,
    "misses": _number(fields.misses),
    "failures": _number(fields.failures),
    "recoveries": _number(fields.recoveries),
    "early": _number(fields.early),
    "max_runtime": _max_runtime,
    **{
        field: _string(_bounded(limits.MAX_KEYWORDS))
        for field in (*BODY_TEXT_FIELDS, *LEGACY_SUBJECT_FIELDS)
    },
    **{field: _boolean for field in BODY_FLAG_FIELDS},
}


def parse_spec(body: Mapping[str, object]) -> dict[str, Any]:
    """The known fields of a create or update request, validated; unknown keys are ignored,
    as Healthchecks ignores them (`api_key` among them). JSON null is refused by each field's
    own type check, except for `max_runtime`, where it means "the grace"."""
    spec = {}
    for field, value in body.items():
        parse = FIELDS.get(field)
        if parse is None:
            continue
        spec[field] = parse(field, value)
    return spec


def unique_columns(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The store columns an upsert matches on; empty (always create) if `unique` names a field
    the request does not carry, as in Healthchecks."""
    fields = spec.get("unique") or []
    if any(field not in spec for field in fields):
        return {}
    columns = {"timeout": "period"}
    values = {**spec, "tags": " ".join(str(spec.get("tags", "")).split())}
    return {columns.get(field, field): values[field] for field in fields}


@dataclasses.dataclass(frozen=True)
class Channel:
    id: str
    name: str
    kind: str


def channel_id(notifier: str) -> str:
    return str(uuid.uuid5(CHANNEL_NAMESPACE, notifier))


def resolve_channels(text: str, channels: Sequence[Channel]) -> tuple[str, ...]:
    """Notifier names from `channels`: "*" all, "" none, else a comma-separated list of ids
    or exact names."""
    if text == "*":
        return tuple(c.name for c in channels)
    if text == "":
        return ()
    names = []
    for item in text.split(","):
        if item == "":
            raise BadRequest("empty channel identifier")
        matches = [c for c in channels if item in (c.id, c.name)]
        if not matches:
            raise BadRequest(f"invalid channel identifier: {item}")
        names.append(matches[0].name)
    return tuple(dict.fromkeys(names))


def definition(
    spec: Mapping[str, Any], existing: Check | None, version: int, channels: Sequence[Channel]
) -> CheckDefinition:
    """What to save: `existing`'s definition (or a new check's defaults) with `spec` applied.

    In v1 and v2 a new name also sets the slug (slugified); v3 leaves the slug alone.
    """
    if existing is None:
        d = CheckDefinition(name="", slug="", period=DEFAULT_TIMEOUT, grace=DEFAULT_GRACE)
    else:
        d = existing.definition()
    changes: dict[str, Any] = {}
    if "name" in spec and spec["name"] != d.name:
        changes["name"] = spec["name"]
        if version < 3:
            changes["slug"] = model.slugify(spec["name"]) if spec["name"] else ""
    if "schedule" in spec:
        changes.update(cron=spec["schedule"], period=None)
    elif "timeout" in spec:
        changes.update(period=float(spec["timeout"]), cron=None)
    if "grace" in spec:
        changes["grace"] = float(spec["grace"])
    if "tags" in spec:
        changes["tags"] = tuple(spec["tags"].split())
    if "max_runtime" in spec:
        runtime = spec["max_runtime"]
        changes["max_runtime"] = float(runtime) if runtime is not None else None
    if "channels" in spec:
        changes["notifiers"] = resolve_channels(spec["channels"], channels)
    if "early" in spec:
        changes["early"] = float(spec["early"])
    for field in ("slug", "desc", "tz", "manual_resume", "methods", "misses", "failures",
                  "recoveries"):  # fmt: skip
        if field in spec:
            changes[field] = spec[field]
    body_fields = {k: v for k, v in spec.items() if k in BODY_TEXT_FIELDS + BODY_FLAG_FIELDS}
    body_fields = {**legacy_subject(d.rules, spec), **body_fields}
    if body_fields:
        changes["rules"] = with_body_rules(d.rules, body_fields)
    return dataclasses.replace(d, **changes)


def legacy_subject(current: CheckRules, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The body rule fields Healthchecks' deprecated `subject` and `subject_fail` stand for:
    the success and failure keywords, searched in the subject while either is set. The
    current fields fill in the one not given; the new fields, given too, win over them."""
    given = {LEGACY_SUBJECT_FIELDS[f]: v for f, v in spec.items() if f in LEGACY_SUBJECT_FIELDS}
    if not given:
        return {}
    keywords = {**body_rule_fields(current), **given}
    return {**given, "filter_subject": bool(keywords["success_kw"] or keywords["failure_kw"])}


def with_body_rules(current: CheckRules, given: Mapping[str, Any]) -> CheckRules:
    """`current` with the keyword fields in `given` changed; its assertions are kept.

    As in Healthchecks, keywords filter only while `filter_http_body` is true. A stored
    pattern RE2 refuses (saved before heartbeatd used RE2) is kept unless `given` replaces it,
    so changing a check's other fields does not fail on it.
    """
    table = current.as_config()
    table.setdefault("filter_http_body", False)
    table.update(given)
    try:
        return rules.from_config(table, stored=set(body_rules.PATTERN_KEYS) - set(given))
    except rules.RuleError as e:
        raise BadRequest(f"json validation error: {e.key}: {e}") from None


def api_status(check: Check, now: float, version: int) -> str:
    """v1 shows a running check as `started`; v2 and v3 show its status as if it were not
    running (and say `started` in a field of its own)."""
    status = model.status_at(check, now)
    if status == Status.STARTED and version > 1:
        status = model.status_at(dataclasses.replace(check, last_start=None), now)
    return str(status)


def next_ping(check: Check) -> float | None:
    """When the check turns late without a ping; a running check: when its run began."""
    if check.last_start is not None and check.status != Status.DOWN:
        return check.last_start
    return model.late_at(check)


@dataclasses.dataclass(frozen=True)
class Site:
    """What URLs in responses are built from."""

    root: str
    version: int
    badge_url: Callable[[Check], str]


def check_json(
    check: Check, now: float, site: Site, read_only: bool, channel_ids: Sequence[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": check.name,
        "slug": check.slug,
        "tags": check.tags,
        "desc": check.desc,
        "grace": int(check.grace),
        "n_pings": check.n_pings,
        "status": api_status(check, now, site.version),
        "started": check.last_start is not None,
        "last_ping": iso(check.last_ping),
        "next_ping": iso(next_ping(check)),
        "manual_resume": check.manual_resume,
        "methods": check.methods,
        **body_rule_fields(check.rules),
        "badge_url": site.badge_url(check),
    }
    if check.last_duration:
        result["last_duration"] = int(check.last_duration)
    if read_only:
        result["unique_key"] = unique_key(check.uuid)
    else:
        update_url = f"{site.root}/api/v{site.version}/checks/{check.uuid}"
        result.update(
            uuid=check.uuid,
            ping_url=f"{site.root}/ping/{check.uuid}",
            update_url=update_url,
            pause_url=f"{update_url}/pause",
            resume_url=f"{update_url}/resume",
            channels=",".join(sorted(channel_ids)),
        )
    if check.cron is not None:
        result.update(schedule=check.cron, tz=check.tz)
    else:
        result["timeout"] = int(check.period or 0)
    # heartbeatd's own fields
    result.update(
        misses=check.misses,
        failures=check.failures,
        recoveries=check.recoveries,
        early=int(check.early),
        counting=model.counting(check, now),
        max_runtime=int(check.max_runtime) if check.max_runtime is not None else None,
        managed=check.managed,
    )
    return result


def body_rule_fields(check_rules: CheckRules) -> dict[str, Any]:
    """The keyword filter fields as Healthchecks shows them ("" and false when unset), the
    deprecated `subject` and `subject_fail` among them."""
    body = check_rules.body.as_config() if check_rules.body is not None else {}
    result: dict[str, Any] = {field: body.get(field, "") for field in BODY_TEXT_FIELDS}
    result.update({field: body.get(field, False) for field in BODY_FLAG_FIELDS})
    for field, keywords in LEGACY_SUBJECT_FIELDS.items():
        result[field] = result[keywords] if result["filter_subject"] else ""
    return result


def ping_json(ping: PingRecord, check: Check, site: Site) -> dict[str, Any]:
    body_url = None
    if ping["body"]:
        base = f"{site.root}/api/v{site.version}/checks/{check.uuid}"
        body_url = f"{base}/pings/{ping['n']}/body"
    result = {
        "type": ping["kind"],
        "date": datetime.fromtimestamp(ping["created"], UTC).isoformat(),
        "n": ping["n"],
        "scheme": ping["scheme"],
        "remote_addr": ping["remote_addr"],
        "method": ping["method"],
        "ua": ping["ua"],
        "rid": ping["rid"],
        "body_url": body_url,
        "exitstatus": ping["exit_status"],
    }
    if ping["duration"] is not None:
        result["duration"] = round(ping["duration"], 2)
    return result


def flip_json(at: float, new_status: str) -> dict[str, Any]:
    return {"timestamp": iso(at), "up": 1 if new_status == Status.UP else 0}
