"""Assertions on a ping's metrics: `bytes = "> 0"`, `duration = ["<= 2h", ">= 30s"]`,
`duration = "<= p95 * 3"`.

A heartbeat proves a job ran; an assertion proves it did something: a backup that "completed"
with 0 bytes written breaks `bytes > 0`, and a success ping that breaks one turns the check down
with the broken assertion as the reason. An expression is a comparison against a number, a
duration (for `duration`, in seconds), or a percentile of the metric's own recent history
(`p95 * 3`: far slower than this job usually is). Pure: the store supplies the history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from heartbeatd.core.durations import format_elapsed, parse_duration
from heartbeatd.core.rules.metrics import NAME, number

HISTORY = 50  # runs a percentile is taken over
MIN_HISTORY = 5  # fewer runs than this: a percentile says nothing yet, the assertion passes
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
_EXPRESSION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")
_PERCENTILE = re.compile(r"^p(\d{1,3})(?:\s*\*\s*(\S+))?$")
EXAMPLES = "'> 0', '<= 2h' (duration) or '<= p95 * 3'"

History = Callable[[str], Sequence[float]]  # metric name -> its recent values, newest first


class AssertionSyntaxError(ValueError):
    """An expression that cannot be read; the message is fit to show after the key."""


@dataclass(frozen=True, slots=True)
class Percentile:
    """`p95 * 3`: a bound taken from the metric's last HISTORY values."""

    rank: int
    factor: float = 1.0

    def __str__(self) -> str:
        return f"p{self.rank}" + (f" * {self.factor:g}" if self.factor != 1 else "")


@dataclass(frozen=True, slots=True)
class Assertion:
    metric: str
    op: str
    bound: float | Percentile
    text: str  # as written: "> 0", shown in alerts

    def __str__(self) -> str:
        return f"{self.metric} {self.text}"


def parse(metric: str, expression: object) -> tuple[Assertion, ...]:
    """The assertions for one metric from its config value: a string or a list of strings."""
    if not NAME.match(metric):
        raise AssertionSyntaxError("metric names are a-z, 0-9 and _, up to 32 characters")
    items = [expression] if isinstance(expression, str) else expression
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise AssertionSyntaxError(
            f"expected a comparison like {EXAMPLES}, or a list of them, got {expression!r}"
        )
    return tuple(_parse_one(metric, item) for item in items)


def _parse_one(metric: str, text: str) -> Assertion:
    match = _EXPRESSION.match(text)
    if not match:
        raise AssertionSyntaxError(f"expected a comparison like {EXAMPLES}, got {text!r}")
    op, operand = match[1], match[2]
    return Assertion(metric, op, _bound(metric, operand, text), f"{op} {operand}")


def _bound(metric: str, operand: str, text: str) -> float | Percentile:
    if (percentile := _PERCENTILE.match(operand)) is not None:
        rank, factor = int(percentile[1]), percentile[2]
        if not 1 <= rank <= 100:
            raise AssertionSyntaxError(f"percentiles run from p1 to p100, got {text!r}")
        scale = number(factor) if factor is not None else 1.0
        if scale is None or scale <= 0:
            raise AssertionSyntaxError(f"expected a positive factor like 'p95 * 3', got {text!r}")
        return Percentile(rank, scale)
    if (value := number(operand)) is not None:
        return value
    if metric == "duration":
        try:
            return parse_duration(operand)
        except ValueError:
            pass
    units = " (units like '2h' are for duration only)" if operand[-1:].isalpha() else ""
    raise AssertionSyntaxError(f"expected a comparison like {EXAMPLES}, got {text!r}{units}")


def broken(
    assertions: Sequence[Assertion],
    metrics: Mapping[str, float],
    require: bool,
    history: History,
) -> list[str]:
    """Each assertion these metrics break, as alerts quote it: `bytes > 0 (got 0)`.

    A metric the ping lacks breaks its assertions only when `require` is set: a job that does
    not report a number has not said it did nothing.
    """
    failures = []
    for assertion in assertions:
        value = metrics.get(assertion.metric)
        if value is None:
            if require:
                failures.append(f"{assertion} (missing)")
            continue
        bound = assertion.bound
        if isinstance(bound, Percentile):
            past = history(assertion.metric)
            if len(past) < MIN_HISTORY:
                continue
            limit = percentile(past, bound.rank) * bound.factor
            if not OPERATORS[assertion.op](value, limit):
                shown = show(assertion.metric, value)
                failures.append(
                    f"{assertion} (got {shown}, {bound} = {show(assertion.metric, limit)})"
                )
        elif not OPERATORS[assertion.op](value, bound):
            failures.append(f"{assertion} (got {show(assertion.metric, value)})")
    return failures


def percentile(values: Sequence[float], rank: int) -> float:
    """Nearest-rank percentile: a value that was actually seen, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def show(metric: str, value: float) -> str:
    """A metric's value as a person reads it: durations as `2h 5m`, numbers as written."""
    if metric == "duration" and value >= 60:
        return format_elapsed(value)
    if metric == "duration":
        return f"{value:.3g}s"
    return f"{value:g}" if isinstance(value, float) else str(value)


def show_all(metrics: Mapping[str, float]) -> str:
    """A ping's metrics on one line, for the check page and alerts: `bytes=0 duration=41.2s`."""
    return " ".join(f"{name}={show(name, value)}" for name, value in metrics.items())
