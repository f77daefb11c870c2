"""One validator per check field, for every way a check is defined: the config file
(config/checks.py), the management API (web/api/schema.py), the web form (web/ui/actions.py)
and the CLI (cli/checks.py). So a value one of them takes, the others take too.

Each validator takes the value in the type its field holds (text, seconds, a list of tags),
since reading that type is each way's own business (JSON is strict, a form is all text, the
file writes durations as `1h`), and returns it or raises FieldError. The caller names the
field in its own way: a located ConfigError, a 400, a sentence under the form field, a CLI
error. The bounds themselves are limits.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from heartbeatd.core import limits
from heartbeatd.core.durations import format_duration, parse_duration
from heartbeatd.core.schedule import validate_schedule, validate_tz

MIN_SECONDS = 1.0  # period, grace and max_runtime: Healthchecks' smallest is 60 s
MAX_SECONDS = 365 * 86400.0  # and its largest
MAX_MISSES = 100
MAX_RUNS = 100  # failures and recoveries, as for misses: past it a count is no longer a threshold
# Half the smallest gap a cron expression can have (a minute), so a ping early by at most
# this much is always nearer the slot it counts for than the one before: it can never stand
# in for a slot it did not meet, whatever the expression. Clock skew and jobs that start a
# few seconds early are what it is for; a job minutes early has a schedule to fix.
MAX_EARLY = 30.0


class FieldError(ValueError):
    """A value its field does not take. str() is the reason, for people; `api` is the same
    in Healthchecks' words after the field's name (`is too small`), for the API's 400."""

    def __init__(self, message: str, api: str | None = None) -> None:
        super().__init__(message)
        self.api = api or f"is {message}"


def _bounded(text: str, limit: int) -> str:
    try:
        return limits.bounded(text, limit)
    except ValueError as e:
        raise FieldError(str(e)) from None


def name(text: str) -> str:
    return _bounded(text, limits.MAX_NAME)


def slug(text: str) -> str:
    """A check's slug, or a notifier's name; empty is the caller's to refuse or fill in."""
    _bounded(text, limits.MAX_SLUG)
    if not limits.SLUG.fullmatch(text):
        raise FieldError(
            f"use lowercase letters, digits, '-' and '_', got {text!r}", "does not match pattern"
        )
    return text


def tags(items: Sequence[str]) -> tuple[str, ...]:
    """`items`, if they fit in MAX_TAGS characters with one space between them."""
    joined = " ".join(items)
    if len(joined) > limits.MAX_TAGS:
        raise FieldError(
            f"too long ({len(items)} tags, {len(joined)} characters with a space between "
            f"them; the limit is {limits.MAX_TAGS})"
        )
    return tuple(items)


def desc(text: str) -> str:
    return _bounded(text, limits.MAX_DESC)


def cron(text: str) -> str:
    """A cron expression, or OnCalendar ones, one per line (core/schedule.py tells which)."""
    return _checked(validate_schedule, text, "is not a valid cron or OnCalendar expression")


def tz(text: str) -> str:
    return _checked(validate_tz, text, "is not a valid timezone")


def _checked(validate: Callable[[str], None], text: str, api: str) -> str:
    try:
        validate(text)
    except ValueError as e:
        raise FieldError(str(e), api) from None
    return text


def seconds(value: float) -> float:
    """A period, grace or max_runtime."""
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        low, high = format_duration(MIN_SECONDS), format_duration(MAX_SECONDS)
        api = "is too small" if value < MIN_SECONDS else "is too large"
        raise FieldError(f"must be between {low} and {high}, got {value:g}s", api)
    return value


def duration(value: object) -> float:
    """seconds() of a duration written as text (`90s`, `5m`, `1h`) or a number of seconds."""
    return seconds(_parsed(value))


def _parsed(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise FieldError(str(e), "is not a number") from None


def misses(value: int) -> int:
    return _count(value, MAX_MISSES)


def failures(value: int) -> int:
    """Failed, timed-out or missed runs in a row that take a check down."""
    return _count(value, MAX_RUNS)


def recoveries(value: int) -> int:
    """Successful runs in a row that bring a down check up."""
    return _count(value, MAX_RUNS)


def _count(value: int, most: int) -> int:
    if not 1 <= value <= most:
        message = f"must be from 1 to {most}"
        raise FieldError(f"{message}, got {value}", message)
    return value


def early(value: float) -> float:
    """How long before a cron slot a ping still counts for it, in seconds."""
    if not 0 <= value <= MAX_EARLY:
        api = "is too small" if value < 0 else "is too large"
        limit = format_duration(MAX_EARLY)
        raise FieldError(f"must be from 0s to {limit}, got {value:g}s", api)
    return value


def early_duration(value: object) -> float:
    """early() of a duration written as text (`30s`) or a number of seconds."""
    return early(_parsed(value))


def methods(value: str) -> str:
    if value not in ("", "POST"):
        raise FieldError(
            f"expected '' (any method) or 'POST', got {value!r}", "has unexpected value"
        )
    return value
