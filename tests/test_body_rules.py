"""Keyword and regular-expression body rules, with PROTOCOL.md §1.5's precedence, over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core import model, rules
from heartbeatd.core.config import ConfigError
from heartbeatd.core.rules.body import KEYS as body_rules_keys
from heartbeatd.core.rules.body import PATTERN_KEYS, BodyRules
from heartbeatd.store import CheckDefinition, Store
from tests.conftest import Daemon, Invoke, MakeConfig

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


def test_a_dollar_also_matches_before_a_final_newline_as_in_python() -> None:
    rule = body_rules(success_re="complete$")  # RE2's $ is the very end; `echo` adds a newline
    assert rule.decide(b"backup complete\n")[0] == "success"
    assert rule.decide(b"backup complete")[0] == "success"
    assert rule.decide(b"backup complete\n\n")[0] == "ign"
    assert rule.decide(b"complete, then more")[0] == "ign"


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


# -- patterns saved before heartbeatd used RE2 ----------------------------------------------

PYTHON_ONLY = r"(\w+) \1 failed"  # a backreference: Python's re ran it, RE2 refuses it


async def start_on_old_database(
    tmp_path: Path, start_daemon: Callable[..., Any]
) -> tuple[Daemon, str]:
    """A daemon started on a database where a check has a pattern only Python's re could run,
    as one saved by an earlier heartbeatd; and that check's UUID."""
    table = {"success_kw": "done", "failure_re": PYTHON_ONLY}
    old_rules = rules.from_config(table, stored=PATTERN_KEYS)  # as it reads back: refused
    async with Store(tmp_path / "heartbeatd.db") as store:
        definition = CheckDefinition(name="old", slug="old", period=60.0, grace=10.0,
                                     rules=old_rules)  # fmt: skip
        check = await store.add_check(definition, 0.0)
    return await start_daemon(), check.uuid


async def test_a_stored_pattern_re2_refuses_loads_and_is_reported_not_run(
    tmp_path: Path,
    start_daemon: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    hb: Invoke,
) -> None:
    caplog.set_level(logging.WARNING, "heartbeatd")
    daemon, uuid = await start_on_old_database(tmp_path, start_daemon)
    refusal = r"not a valid regular expression: invalid escape sequence: \1"
    assert f"check old: failure_re is not run until replaced: {refusal}" in caplog.text
    await daemon.client.post(f"/ping/{uuid}", data=b"disk disk failed")  # Python's re: a fail
    await daemon.client.post(f"/ping/{uuid}", data=b"done")
    kinds, status, _ = await pings_and_flip(daemon)
    assert kinds == ["ign", "success"] and status == "up"
    skipped = f"; failure_re {PYTHON_ONLY!r} not run: RE2 refuses it"
    notes = [json.loads(n) for (n,) in await daemon.query("SELECT notes FROM pings ORDER BY n")]
    assert notes == [[f"no keyword in the body{skipped}"],
                     [f"success keyword 'done' in the body{skipped}"]]  # fmt: skip
    shown = (await asyncio.to_thread(hb, "check", "show", "old")).output
    assert re.search(rf"failure_re not run: +{re.escape(refusal)}", shown)


async def test_the_api_keeps_a_stored_pattern_re2_refuses_until_it_is_replaced(
    tmp_path: Path, start_daemon: Callable[..., Any]
) -> None:
    daemon, uuid = await start_on_old_database(tmp_path, start_daemon)
    key, _ = await daemon.store.create_api_key("writer", False, daemon.clock.now(), "cli")

    async def update(**fields: Any) -> tuple[int, Any]:
        response = await daemon.client.post(
            f"/api/v3/checks/{uuid}", data=json.dumps(fields), headers={"X-Api-Key": key}
        )
        return response.status, await response.json()

    status, check = await update(name="renamed", success_kw="finished")
    assert status == 200 and check["failure_re"] == PYTHON_ONLY  # kept, still not run
    status, check = await update(failure_re=r"(\w+) failed")
    assert status == 200 and check["failure_re"] == r"(\w+) failed"
    await daemon.client.post(f"/ping/{uuid}", data=b"disk failed")
    kinds, status, flip = await pings_and_flip(daemon)
    assert kinds == ["fail"] and flip[2] == r"body matches failure_re '(\\w+) failed'"
