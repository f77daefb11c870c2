"""Parsers of single values, shared by the settings and the tables: each returns the value it
accepts or raises ValueError with a message that a ConfigError then locates."""

from __future__ import annotations

import re
from collections.abc import Callable

from heartbeatd.core import limits
from heartbeatd.core.redact import kind_of
from heartbeatd.core.schedule import validate_cron, validate_tz


def as_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {kind_of(value)}")
    return value


def bounded_int(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    return parse


def strict_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def bounded_text(limit: int) -> Callable[[object], str]:
    return lambda value: limits.bounded(as_text(value), limit)


def slug_value(value: object) -> str:
    """A check's slug or a notifier's name: in the file, each names one thing, so never empty."""
    text = as_text(value)
    if not text:
        raise ValueError("must not be empty")
    return limits.slug(text)


def cron_value(value: object) -> str:
    text = as_text(value)
    validate_cron(text)
    return text


def tz_value(value: object) -> str:
    text = as_text(value)
    validate_tz(text)
    return text


def methods_value(value: object) -> str:
    if value not in ("", "POST"):
        raise ValueError(f"expected '' (any method) or 'POST', got {value!r}")
    return str(value)


def tags_value(value: object) -> tuple[str, ...]:
    return limits.tags(name_list(value))


def name_list(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"expected a list of names, got {value!r}")
    return tuple(items)
