"""Numbers a ping carries: `?count=1234&bytes=5.2e9`, Cronitor's `metric=count:N`, JSON fields,
the samples of a Prometheus push (`backup_bytes 5.2e9`).

A job's own report of what it did (rows copied, bytes written, errors seen) is what assertions
check. Pings come from scripts and scanners alike, so nothing here raises: a value that is not a
plain finite number, a bad name or one metric too many is left out and described in a note that
is stored with the ping, and the ping itself is always recorded.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")  # fullmatch: "$" would take a trailing newline
NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
MAX_METRICS = 16
MAX_VALUE_CHARS = 40
MAX_NOTES = 8
# Query parameters that mean something else: ours (rid, create, and the definition a
# ?create=1 ping may carry: web/declare.py) and those of the other ping
# forms (ingress.py): Cronitor telemetry's, Uptime Kuma's (status, msg, ping), Snitch's (m, s).
RESERVED = frozenset(
    {"rid", "create", "period", "cron", "tz", "grace", "max_runtime", "misses", "metric",
     "state", "message", "msg", "series", "host", "env", "stamp",
     "status_code", "status", "ping", "m", "s"}
)  # fmt: skip
# Cronitor's metric=NAME:VALUE names, as heartbeatd names them.
CRONITOR = {"count": "count", "duration": "duration", "error_count": "errors"}

# One sample line of Prometheus' text exposition format: name{label="value",...} value [time].
# Linear: no two parts can match the same characters (inside the braces, a quote starts a
# value and nothing else), so a line that is not a sample fails without backtracking.
SAMPLE_LINE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)(?:[ \t]+\S+)?[ \t]*'
)
MAX_SAMPLES = 1000  # sample lines read from one push; the rest are not looked at
MAX_LINE = 1024  # characters; a longer line is skipped unparsed

Metrics = dict[str, float]


def number(text: str) -> float | None:
    """A plain finite decimal number, or None ('nan', 'inf', '1e400', '0x10', '1_0' are not)."""
    if len(text) > MAX_VALUE_CHARS or not NUMBER.match(text):
        return None
    value = float(text)
    return _tidy(value) if math.isfinite(value) else None


def _tidy(value: float) -> float:
    """Whole numbers as ints, so `count=3` is stored and shown as 3, not 3.0."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


class _Collector:
    """Metrics and notes for one ping, enforcing the per-ping limit."""

    def __init__(self) -> None:
        self.metrics: Metrics = {}
        self.notes: list[str] = []
        self.excess = 0

    def add(self, name: str, text: str) -> None:
        if not NAME.fullmatch(name):
            self.note(f"ignored metric {name[:40]!r}: names are a-z, 0-9 and _, up to 32")
        elif (value := number(text)) is None:
            self.note(f"ignored {name}={text[:40]!r}: not a finite number")
        elif name not in self.metrics and len(self.metrics) >= MAX_METRICS:
            self.excess += 1
        else:
            self.metrics[name] = value

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        elif len(self.notes) == MAX_NOTES:
            self.notes.append("more values ignored")

    def result(self) -> tuple[Metrics, list[str]]:
        if self.excess:
            self.notes.insert(0, f"ignored {self.excess} metrics over the limit of {MAX_METRICS}")
        return self.metrics, self.notes


def from_query(query: Iterable[tuple[str, str]]) -> tuple[Metrics, list[str]]:
    """Metrics from query parameters, in order; reserved parameters are not metrics."""
    found = _Collector()
    for key, value in query:
        if key == "metric":
            name, sep, text = value.partition(":")
            if not sep or name not in CRONITOR:
                found.note(f"ignored metric={value[:40]!r}: expected count:N, duration:N "
                           "or error_count:N")  # fmt: skip
            else:
                found.add(CRONITOR[name], text)
        elif key not in RESERVED:
            found.add(key, value)
    return found.result()


def from_json(body: bytes, names: Iterable[str]) -> tuple[Metrics, list[str]]:
    """The top-level numeric fields `names` of a JSON object body.

    Only the fields a check's config names are read, so a job posting its whole report as JSON
    does not turn every number in it into a metric.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return {}, ["body is not valid JSON: no metrics read from it"]
    if not isinstance(document, Mapping):
        return {}, ["JSON body is not an object: no metrics read from it"]
    found = _Collector()
    for name in names:
        value = document.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.note(f"ignored JSON field {name}: not a number")
        elif abs(value) > 1e308 or not math.isfinite(value):  # NaN, Infinity, 1e400
            found.note(f"ignored JSON field {name}: not a finite number")
        else:
            found.metrics[name] = _tidy(float(value))
    return found.result()


@dataclass(frozen=True, slots=True)
class Exposition:
    """What a Prometheus text-format body says: its metrics as a ping's, and every sample."""

    metrics: Metrics
    notes: list[str]
    samples: tuple[tuple[str, float], ...]  # (name, value) of each finite sample, labelled too


def from_prometheus(text: str) -> Exposition:
    """The samples of a Prometheus push, read in time linear in `text` and at most MAX_SAMPLES.

    A name with one sample in the push is a metric, whatever its labels; a name with several
    (a histogram's buckets, a gauge per target) is not one number, so it is left out and noted.
    """
    samples: list[tuple[str, str]] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(samples) == MAX_SAMPLES:
            return _exposition(samples, skipped, f"stopped reading after {MAX_SAMPLES} samples")
        match = SAMPLE_LINE.fullmatch(line) if len(line) <= MAX_LINE else None
        if match is None:
            skipped += 1
        else:
            samples.append((match[1], match[3]))
    return _exposition(samples, skipped)


def _exposition(samples: list[tuple[str, str]], skipped: int, more: str = "") -> Exposition:
    counts = Counter(name for name, _ in samples)
    found = _Collector()
    for name, text in samples:
        if counts[name] == 1:
            found.add(name, text)
    several = [name for name, count in counts.items() if count > 1]
    if several:
        found.note(f"ignored {', '.join(several[:3])}{' and more' if len(several) > 3 else ''}: "
                   "several samples with one name")  # fmt: skip
    if skipped:
        found.note(f"ignored {skipped} lines that are not Prometheus samples")
    if more:
        found.note(more)
    values = ((name, number(text)) for name, text in samples)
    metrics, notes = found.result()
    return Exposition(metrics, notes, tuple((n, v) for n, v in values if v is not None))
