"""What a ping means, decided without a database: core/outcome.py, one pure function of
(check, ping, now), which the store only persists."""

from __future__ import annotations

from dataclasses import replace

from heartbeatd.core import rules
from heartbeatd.core.model import Status
from heartbeatd.core.outcome import BodyDecision, PingIn, outcome, pending_search
from tests.test_model import T0, make_check

PING = PingIn("success", None, None, "GET", "http", "127.0.0.1", "curl", b"", 0)


def test_a_start_then_a_success_closes_the_run_with_its_duration() -> None:
    check = make_check()
    started = outcome(check, replace(PING, action="start"), T0)
    assert started.kind == "start" and started.duration is None
    done = outcome(check, PING, T0 + 42)
    assert done.kind == "success" and done.duration == 42
    assert check.status == Status.UP and done.flip is not None and done.flip.new == "up"


def test_a_failure_keyword_turns_a_success_into_a_failure_that_alerts() -> None:
    check = make_check(status="up", rules=rules.from_config({"failure_kw": "ERROR"}))
    result = outcome(check, replace(PING, body=b"disk ERROR", body_size=10), T0)
    assert result.kind == "fail" and check.status == Status.DOWN
    assert result.flip is not None and result.flip.notifies


def test_a_broken_assertion_fails_the_run_and_says_which() -> None:
    check = make_check(status="up", rules=rules.from_config({"assert": {"rows": "> 0"}}))
    result = outcome(check, replace(PING, metrics=(("rows", 0.0),)), T0)
    assert result.kind == "fail" and result.metrics == {"rows": 0.0}
    assert result.flip is not None and "rows > 0 (got 0)" in result.flip.detail


def test_a_relative_assertion_reads_the_history_it_is_given() -> None:
    table = {"assert": {"duration": "<= p95 * 2"}}
    check = make_check(status="up", rules=rules.from_config(table))
    slow = replace(PING, duration=100.0)
    assert outcome(check, slow, T0, history=lambda name: [10.0] * 20).kind == "fail"
    check = make_check(status="up", rules=rules.from_config(table))
    assert outcome(check, slow, T0, history=lambda name: [60.0] * 20).kind == "success"


def test_a_searching_rule_is_left_to_the_caller_until_its_decision_comes() -> None:
    check = make_check(status="up", rules=rules.from_config({"failure_re": "ERR(OR)?"}))
    body = check.rules.body
    assert body is not None and body.searches
    ping = replace(PING, body=b"ERR", body_size=3)
    assert pending_search(check, ping, None) is body
    decision = BodyDecision(body, body.decide(ping.body))
    assert pending_search(check, ping, decision) is None
    assert outcome(check, ping, T0, decision).kind == "fail"
