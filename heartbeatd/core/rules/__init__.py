"""What a check demands of a ping beyond its arrival: metric assertions and body rules.

Built from the `[[check]]` table (`[check.assert]`, `json_metrics`, the keyword keys), stored as
one JSON column on the check, and applied to every ping inside the writer's batch (store.py),
so the verdict, the ping and the flip it causes are one transaction. A check without rules is
NO_RULES, which is falsy, so an ordinary ping pays one truth test for all of this.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from heartbeatd.core.rules import assertions
from heartbeatd.core.rules import body as body_rules
from heartbeatd.core.rules.assertions import Assertion, History
from heartbeatd.core.rules.body import BodyRules
from heartbeatd.core.rules.metrics import MAX_METRICS, NAME

KEYS = ("assert", "json_metrics", *body_rules.KEYS)  # [[check]] keys read here


class RuleError(ValueError):
    """A mistake in a check's rules; `key` is the config key, `assert.bytes` for an assertion."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class CheckRules:
    assertions: tuple[Assertion, ...] = ()
    require: bool = False  # a metric an assertion needs must be in every success ping
    json_metrics: tuple[str, ...] = ()  # top-level fields of a JSON body read as metrics
    body: BodyRules | None = None  # None: the body does not decide the action

    def __bool__(self) -> bool:
        return bool(self.assertions or self.json_metrics or self.body)

    def as_config(self) -> dict[str, object]:
        """The config keys that build these rules again: stored, and shown by `check show`."""
        found: dict[str, object] = {}
        if self.assertions:
            table: dict[str, object] = {"require": True} if self.require else {}
            for metric in dict.fromkeys(a.metric for a in self.assertions):
                table[metric] = [a.text for a in self.assertions if a.metric == metric]
            found["assert"] = table
        if self.json_metrics:
            found["json_metrics"] = list(self.json_metrics)
        if self.body is not None:
            found.update(self.body.as_config())
        return found

    def describe(self) -> list[tuple[str, str]]:
        """(label, text) lines for `heartbeatd check show`."""
        lines = []
        if self.assertions:
            missing = "fail" if self.require else "pass"
            texts = ", ".join(str(a) for a in self.assertions)
            lines.append(("assert", f"{texts} (pings without a metric {missing})"))
        if self.json_metrics:
            lines.append(("json_metrics", ", ".join(self.json_metrics)))
        if self.body is not None:
            config = self.body.as_config()
            judged = [s for s in body_rules.SWITCHES if config.pop(s, False)]
            text = ", ".join(f"{k} = {v!r}" for k, v in config.items()) or "ignore every ping"
            lines.append(("body rules", f"{text} ({', '.join(judged)})"))
            lines += [(f"{key} not run", why) for key, why in self.body.refused()]
        return lines

    def to_json(self) -> str | None:
        return json.dumps(self.as_config()) if self else None


NO_RULES = CheckRules()


def from_config(table: Mapping[str, object], stored: Collection[str] = ()) -> CheckRules:
    """The rules in a `[[check]]` table (its other keys are config.py's); RuleError if wrong
    or too long. `stored`: keys read back from the database (body_rules.from_config)."""
    rules = _build(table, stored)
    try:
        if rules.body is not None:
            body_rules.check_bounds(rules.body)
    except body_rules.BodyRuleError as e:
        raise RuleError(e.key, str(e)) from None
    return rules


def from_json(text: str | None) -> CheckRules:
    """Rules as stored on the check row; NULL for a check without any. A pattern saved before
    heartbeatd used RE2 that RE2 refuses is loaded as not runnable: the check still loads."""
    if text is None:
        return NO_RULES
    return _build(json.loads(text), stored=body_rules.PATTERN_KEYS)


def _build(table: Mapping[str, object], stored: Collection[str] = ()) -> CheckRules:
    assertions_, require = _assert_table(table.get("assert", {}))
    try:
        body = body_rules.from_config(table, stored)
    except body_rules.BodyRuleError as e:
        raise RuleError(e.key, str(e)) from None
    rules = CheckRules(assertions_, require, _json_metrics(table.get("json_metrics", [])), body)
    return rules if rules else NO_RULES


def _assert_table(value: object) -> tuple[tuple[Assertion, ...], bool]:
    if not isinstance(value, Mapping):
        raise RuleError("assert", "write assertions as a [check.assert] table of metric = '> 0'")
    found: list[Assertion] = []
    require = False
    for metric, expression in value.items():
        if metric == "require":
            if not isinstance(expression, bool):
                raise RuleError("assert.require", f"expected true or false, got {expression!r}")
            require = expression
            continue
        try:
            found += assertions.parse(metric, expression)
        except assertions.AssertionSyntaxError as e:
            raise RuleError(f"assert.{metric}", str(e)) from None
    return tuple(found), require


def _json_metrics(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) and NAME.match(n) for n in value):
        raise RuleError(
            "json_metrics", f"expected a list of metric names like ['rows', 'bytes'], got {value!r}"
        )
    if len(value) > MAX_METRICS:
        raise RuleError("json_metrics", f"at most {MAX_METRICS} names, got {len(value)}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules made of a ping: its action, and why when they changed it."""

    action: str
    reason: str = ""  # the flip's reason if this ping takes the check down: fail, assertion
    detail: str = ""
    note: str = ""  # stored with the ping


def judge(
    rules: CheckRules,
    action: str,
    decided: tuple[str, str] | None,
    metrics: Mapping[str, float],
    history: History,
) -> Verdict:
    """Apply the body rules' decision (which overrides the URL's action), then, to a success,
    the assertions; `action` has already been through the method and pause rules (§1.5).
    `decided` is rules.body.decide(body), made by the caller, which can run it off the loop."""
    verdict = Verdict(action)
    if decided is not None and action != "ign":
        decision, why = decided
        verdict = Verdict(decision, "fail" if decision == "fail" else "", why, why)
    if verdict.action != "success" or not rules.assertions:
        return verdict
    failures = assertions.broken(rules.assertions, metrics, rules.require, history)
    if not failures:
        return verdict
    detail = "; ".join(failures)
    return Verdict("fail", "assertion", detail, f"assertion failed: {detail}")
