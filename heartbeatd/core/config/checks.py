"""`[[check]]` tables: each becomes a CheckDefinition, its mistakes located by key (and by
`assert.bytes` in its `[check.assert]` table)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from heartbeatd.core import fields, rules
from heartbeatd.core.config.document import ConfigError, KeyProblem, Lines, TableKeys, tables
from heartbeatd.core.config.notifiers import NotifierSpec
from heartbeatd.core.config.values import (
    name_list,
    slug_value,
    strict_bool,
    tags_value,
    text,
    whole_number,
)  # fmt: skip
from heartbeatd.core.model import CheckDefinition, slugify

CHECK_KEYS = (
    tuple(f.name for f in dataclasses.fields(CheckDefinition) if f.name != "rules") + rules.KEYS
)


def read_checks(
    value: object, path: Path, lines: Lines, notifiers: tuple[NotifierSpec, ...]
) -> list[CheckDefinition]:
    known_notifiers = {spec.name for spec in notifiers} | ({"log"} if not notifiers else set())
    checks: list[CheckDefinition] = []
    for index, table in enumerate(tables(value, path, lines, "check")):
        at = lines.table("check", index)
        try:
            check = _check(table, known_notifiers)
        except KeyProblem as e:
            line = _check_key_line(lines, index, e.key)
            raise ConfigError(str(path), line, e.key, e.message) from None
        if any(other.slug == check.slug for other in checks):
            line = at.get("slug", at.get(""))
            raise ConfigError(str(path), line, "slug", f"another check has slug {check.slug!r}")
        checks.append(check)
    return checks


def _check(table: dict[str, Any], known_notifiers: set[str]) -> CheckDefinition:
    """One [[check]] table as a CheckDefinition; KeyProblem names the offending key."""

    get = TableKeys(table, CHECK_KEYS, "a check").get
    name = get("name", text(fields.name), None)
    if not name:
        raise KeyProblem("name", "required: what the job is called")
    slug = get("slug", slug_value, slugify(name))
    period = get("period", fields.duration, None)
    cron = get("cron", text(fields.cron), None)
    if (period is None) == (cron is None):
        raise KeyProblem(
            "period", "give either period (e.g. '1h') or cron (e.g. '0 3 * * *' or 'Mon 09:00')"
        )
    notifiers = get("notifiers", name_list, None)
    for notifier in notifiers or ():
        if notifier not in known_notifiers:
            raise KeyProblem("notifiers", f"no [[notifier]] named {notifier!r}")
    return CheckDefinition(
        name=name,
        slug=slug,
        period=period,
        cron=cron,
        tz=get("tz", text(fields.tz), "UTC"),
        grace=get("grace", fields.duration, 3600.0),
        tags=get("tags", tags_value, ()),
        desc=get("desc", text(fields.desc), ""),
        notifiers=notifiers,
        misses=get("misses", whole_number(fields.misses), 1),
        failures=get("failures", whole_number(fields.failures), 1),
        recoveries=get("recoveries", whole_number(fields.recoveries), 1),
        early=get("early", fields.early_duration, 0.0),
        max_runtime=get("max_runtime", fields.duration, None),
        manual_resume=get("manual_resume", strict_bool, False),
        methods=get("methods", text(fields.methods), ""),
        rules=_rules(table),
    )


def _rules(table: dict[str, Any]) -> rules.CheckRules:
    try:
        return rules.from_config(table)
    except rules.RuleError as e:
        raise KeyProblem(e.key, str(e)) from None


def _check_key_line(lines: Lines, index: int, key: str) -> int | None:
    """The line of a [[check]] key, or of `assert.bytes` in its [check.assert] table."""
    at = lines.table("check", index)
    table, _, sub = key.partition(".")
    inner = lines.table(f"check.{table}", index) if sub else {}
    return inner.get(sub) or at.get(table) or inner.get("") or at.get("")
