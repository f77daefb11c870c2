"""Parsers of single values, shared by the settings and the tables: each returns the value it
accepts or raises ValueError with a message that a ConfigError then locates."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from heartbeatd.core import fields
from heartbeatd.core.redact import kind_of

Parsed = TypeVar("Parsed")


def as_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {kind_of(value)}")
    return value


def bounded_int(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number = _whole(value)
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return number

    return parse


def strict_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def text(validate: Callable[[str], Parsed]) -> Callable[[object], Parsed]:
    """A check field's validator (core/fields.py) for a value that must be a string."""
    return lambda value: validate(as_text(value))


def whole_number(validate: Callable[[int], int]) -> Callable[[object], int]:
    """A check field's validator for a whole number, which a file may quote ("2")."""
    return lambda value: validate(_whole(value))


def _whole(value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def slug_value(value: object) -> str:
    """A check's slug or a notifier's name: in the file, each names one thing, so never empty."""
    slug = as_text(value)
    if not slug:
        raise ValueError("must not be empty")
    return fields.slug(slug)


def tags_value(value: object) -> tuple[str, ...]:
    return fields.tags(name_list(value))


def name_list(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"expected a list of names, got {value!r}")
    return tuple(items)
