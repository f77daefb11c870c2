"""Durations as people write them in config files and on the command line: `45s`, `5m`, `2h`."""

from __future__ import annotations

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from `45s`, `5m`, `2h`, `1d`, `1w`, a bare number of seconds, or a number.

    Raises ValueError with a message fit to show a user after the key's name.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '5m' or a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(
                f"expected a duration like '45s', '5m', '2h', '1d' or '1w', got {value!r}"
            )
        seconds = float(match[1]) * UNITS[match[2] or "s"]
    else:
        raise ValueError(f"expected a duration like '5m' or a number of seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a non-negative duration, got {value!r}")
    return seconds


def parse_bounded_duration(value: str | int | float, low: float, high: float) -> float:
    """parse_duration, then enforce a setting's range (a check's: fields.duration)."""
    seconds = parse_duration(value)
    if not low <= seconds <= high:
        raise ValueError(
            f"must be between {format_duration(low)} and {format_duration(high)}, got {value!r}"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 300 → '5m', 90 → '90s', 1.5 → '1.5s'."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    for unit in ("w", "d", "h", "m"):
        if whole and whole % UNITS[unit] == 0:
            return f"{whole // UNITS[unit]}{unit}"
    return f"{whole}s"


def format_elapsed(seconds: float) -> str:
    """A span for people, to the two largest units: 121 → '2m 1s', 93784 → '1d 2h'."""
    remaining = max(0, round(seconds))
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, remaining = divmod(remaining, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2]) or "0s"
