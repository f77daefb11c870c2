"""Keyword and regular-expression body rules, with PROTOCOL.md §1.5's precedence, over HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from heartbeatd import model, rules
from heartbeatd.body_rules import KEYS as body_rules_keys
from heartbeatd.body_rules import BodyRules
from heartbeatd.config import ConfigError
from tests.conftest import Daemon, MakeConfig

KEYWORDS = {"failure_kw": "ERROR, Traceback", "success_kw": "backup complete", "start_kw": "BEGIN"}


def body_rules(**table: Any) -> BodyRules:
    found = rules.from_config(table).body
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("body", "action"),
    [
        (b"backup complete", "success"),
        (b"backup complete, but ERROR in one file", "fail"),  # failure wins over success
        (b"BEGIN ... backup complete", "success"),  # success wins over start
        (b"BEGIN nightly run", "start"),
        (b"Traceback (most recent call last)", "fail"),
        (b"error: lowercase does not match", "ign"),  # keywords are case-sensitive
        (b"", "ign"),
    ],
)
def test_keywords_decide_in_protocol_order(body: bytes, action: str) -> None:
    assert body_rules(**KEYWORDS).decide(body)[0] == action


def test_nothing_matching_is_a_failure_with_filter_default_fail() -> None:
    rule = body_rules(**KEYWORDS, filter_default_fail=True)
    assert rule.decide(b"all quiet") == ("fail", "no keyword in the body (filter_default_fail)")
    assert rule.decide(b"backup complete")[0] == "success"


def test_the_reason_names_the_keyword_or_pattern_that_matched() -> None:
    assert body_rules(**KEYWORDS).decide(b"x ERROR y") == (
        "fail",
        "failure keyword 'ERROR' in the body",
    )
    rule = body_rules(failure_re=r"exit code [1-9]\d*")
    assert rule.decide(b"rsync: exit code 23") == (
        "fail",
        r"body matches failure_re 'exit code [1-9]\\d*'",
    )


def test_regular_expressions_keep_the_kinds_order() -> None:
    rule = body_rules(success_re=r"^OK\b", failure_re=r"(?i)\bfatal\b", start_kw="BEGIN")
    assert rule.decide(b"OK 12 files")[0] == "success"
    assert rule.decide(b"OK, but Fatal: disk gone")[0] == "fail"
    assert rule.decide(b"BEGIN")[0] == "start"
    assert rule.decide(b"not OK")[0] == "ign"


def test_keywords_may_be_a_list_and_blank_entries_are_dropped() -> None:
    rule = body_rules(failure_kw=["ERROR", "", "panic: "])
    assert rule.keywords == {"failure": ("ERROR", "panic:")}


def test_filter_http_body_false_turns_the_rules_off() -> None:
    assert rules.from_config({**KEYWORDS, "filter_http_body": False}) is rules.NO_RULES


def test_undecodable_bytes_do_not_stop_matching() -> None:
    assert body_rules(**KEYWORDS).decide(b"\xff\xfe ERROR \x80")[0] == "fail"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('failure_re = "([a-z"\n', "4: failure_re: not a valid regular expression"),
        ("success_kw = 3\n", "4: success_kw: expected comma-separated keywords"),
        ('filter_default_fail = "yes"\n', "4: filter_default_fail: expected true or false"),
    ],
)
def test_rule_mistakes_are_located(make_config: MakeConfig, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_config(f'[[check]]\nname = "a"\nperiod = "1h"\n{toml}')


# -- over HTTP: the rules inside the ping path ---------------------------------------------


async def add(daemon: Daemon, **fields: Any) -> Any:
    table = {key: fields.pop(key) for key in list(fields) if key in rules.KEYS}
    return await daemon.add(rules=rules.from_config(table), **fields)


async def pings_and_flip(daemon: Daemon) -> tuple[list[str], str, tuple[str, str, str]]:
    kinds = [kind for (kind,) in await daemon.query("SELECT kind FROM pings ORDER BY n")]
    ((status,),) = await daemon.query("SELECT status FROM checks")
    flip = await daemon.query("SELECT new_status, reason, detail FROM flips ORDER BY id DESC")
    return kinds, status, flip[0] if flip else ("", "", "")


async def test_a_failure_keyword_takes_the_check_down_naming_the_keyword(daemon: Daemon) -> None:
    check = await add(daemon, **KEYWORDS)
    await daemon.client.post(f"/ping/{check.uuid}", data=b"12 files, backup complete")
    await daemon.client.post(f"/ping/{check.uuid}", data=b"backup complete? no: ERROR 5")
    kinds, status, flip = await pings_and_flip(daemon)
    assert kinds == ["success", "fail"] and status == "down"
    assert flip == ("down", "fail", "failure keyword 'ERROR' in the body")
    ((notes,),) = await daemon.query("SELECT notes FROM pings WHERE n = 2")
    assert json.loads(notes) == ["failure keyword 'ERROR' in the body"]


async def test_the_body_overrides_the_url(daemon: Daemon) -> None:
    check = await add(daemon, **KEYWORDS)
    await daemon.client.post(f"/ping/{check.uuid}/fail", data=b"backup complete")
    await daemon.client.post(f"/ping/{check.uuid}/1", data=b"BEGIN")
    await daemon.client.post(f"/ping/{check.uuid}/log", data=b"nothing to see")
    kinds, status, _ = await pings_and_flip(daemon)
    assert kinds == ["success", "start", "ign"] and status == "up"


async def test_a_post_only_check_ignores_a_get_before_any_keyword(daemon: Daemon) -> None:
    check = await add(daemon, methods="POST", failure_kw="ERROR", filter_default_fail=True)
    await daemon.client.get(f"/ping/{check.uuid}?msg=ERROR")
    kinds, status, _ = await pings_and_flip(daemon)
    assert kinds == ["ign"] and status == "new"


async def test_a_manually_paused_check_ignores_pings_before_any_keyword(daemon: Daemon) -> None:
    check = await add(daemon, success_kw="done", manual_resume=True)
    await daemon.store.change_state(check.uuid, model.pause, daemon.clock.now())
    await daemon.client.post(f"/ping/{check.uuid}", data=b"done")
    kinds, status, _ = await pings_and_flip(daemon)
    assert kinds == ["ign"] and status == "paused"


async def test_a_body_success_is_then_held_to_the_assertions(daemon: Daemon) -> None:
    check = await add(daemon, success_kw="done", **{"assert": {"rows": ">= 1"}})
    await daemon.client.post(f"/ping/{check.uuid}/fail?rows=0", data=b"done")
    kinds, status, flip = await pings_and_flip(daemon)
    assert kinds == ["fail"] and status == "down"
    assert flip == ("down", "assertion", "rows >= 1 (got 0)")


def test_the_examples_commented_body_rules_load(make_config: MakeConfig) -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    keys = "|".join(k for k in body_rules_keys if k != "filter_http_body")
    text = re.sub(rf"^# (({keys}) = )", r"\1", example.read_text(), flags=re.M)
    (check,) = make_config(text).checks
    assert check.rules.body is not None
    assert check.rules.body.decide(b"Traceback: boom")[0] == "fail"
    assert check.rules.body.decide(b"backup complete")[0] == "success"
