"""`[[silence]]` tables: maintenance windows, each a core Silence, mistakes located by key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from heartbeatd.core import fields
from heartbeatd.core.config.document import ConfigError, KeyProblem, Lines, TableKeys, tables
from heartbeatd.core.config.values import as_text, name_list, tags_value, text
from heartbeatd.core.durations import parse_bounded_duration
from heartbeatd.core.silence import MAX_WINDOW, Silence, local_start

SILENCE_KEYS = ("name", "tags", "checks", "cron", "start", "duration", "tz")

Parsed = TypeVar("Parsed")


def read_silences(value: object, path: Path, lines: Lines) -> list[Silence]:
    silences: list[Silence] = []
    for index, table in enumerate(tables(value, path, lines, "silence")):
        at = lines.table("silence", index)
        try:
            silence = _silence(table)
        except KeyProblem as e:
            line = at.get(e.key, at.get(""))
            raise ConfigError(str(path), line, f"silence.{e.key}", e.message) from None
        if any(other.name == silence.name for other in silences):
            line = at.get("name", at.get(""))
            raise ConfigError(
                str(path), line, "silence.name", f"another silence is named {silence.name!r}"
            )
        silences.append(silence)
    return silences


def _silence(table: dict[str, Any]) -> Silence:
    """One [[silence]] table; KeyProblem names the offending key."""

    keys = TableKeys(table, SILENCE_KEYS, "a silence")

    def get(key: str, parse: Callable[[Any], Parsed]) -> Parsed | None:
        return keys.get(key, parse, None)

    name = get("name", text(fields.name))
    if not name:
        raise KeyProblem("name", "required: what the window is called in alerts")
    duration = get("duration", _window)
    if duration is None:
        raise KeyProblem("duration", "required: how long each window lasts, e.g. '2h'")
    tz = get("tz", text(fields.tz)) or "UTC"
    cron = get("cron", text(fields.cron))
    start = get("start", lambda value: local_start(as_text(value), tz))
    if (cron is None) == (start is None):
        raise KeyProblem("cron", "give either cron (recurring starts) or start (one window)")
    return Silence(
        name=name, duration=duration, cron=cron, start=start, tz=tz,
        tags=get("tags", tags_value) or (), checks=get("checks", _slugs) or (),
    )  # fmt: skip


def _window(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '2h', got {value!r}")
    return parse_bounded_duration(value, 60.0, MAX_WINDOW)


def _slugs(value: object) -> tuple[str, ...]:
    """Check slugs, within the bound a check's tags have (fields.tags)."""
    return fields.tags([fields.slug(slug) for slug in name_list(value)])
