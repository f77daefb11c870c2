"""Assertions: every expression form, config mistakes located, and a check taken down by one."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core import rules
from heartbeatd.core.config import ConfigError, load_config
from heartbeatd.core.rules import assertions
from heartbeatd.core.rules.assertions import Assertion, AssertionSyntaxError, Percentile
from heartbeatd.daemon.reload import Reloader
from tests.conftest import Daemon, MakeConfig, eventually
from tests.notify_helpers import json_sink, make_event

RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"


def no_history(metric: str) -> Sequence[float]:
    return []


def broken(expression: str | list[str], value: float | None, metric: str = "bytes") -> list[str]:
    parsed = assertions.parse(metric, expression)
    metrics = {} if value is None else {metric: value}
    return assertions.broken(parsed, metrics, require=False, history=no_history)


# -- expressions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "passing", "failing"),
    [
        (">= 1", 1, 0.5),
        ("> 0", 0.001, 0),
        ("== 0", 0, 1),
        ("!= 0", 3, 0),
        ("< 10", 9.99, 10),
        ("<= 10", 10, 10.5),
        ("<= -1.5e3", -2000, 0),
    ],
)
def test_each_comparison_passes_and_fails_where_it_should(
    expression: str, passing: float, failing: float
) -> None:
    assert broken(expression, passing) == []
    assert broken(expression, failing) == [f"bytes {expression.strip()} (got {failing:g})"]


def test_the_alert_text_quotes_the_assertion_and_the_value() -> None:
    assert broken("> 0", 0) == ["bytes > 0 (got 0)"]
    assert broken(" >0 ", 0) == ["bytes > 0 (got 0)"]


def test_durations_take_units_and_show_the_value_readably() -> None:
    assert assertions.parse("duration", "<= 2h")[0].bound == 7200
    assert broken(["<= 2h", ">= 30s"], 3 * 3600 + 300, "duration") == ["duration <= 2h (got 3h 5m)"]
    assert broken(["<= 2h", ">= 30s"], 4.2, "duration") == ["duration >= 30s (got 4.2s)"]
    assert broken(["<= 2h", ">= 30s"], 600, "duration") == []


def test_a_missing_metric_passes_unless_required() -> None:
    parsed = assertions.parse("bytes", "> 0")
    assert assertions.broken(parsed, {}, require=False, history=no_history) == []
    assert assertions.broken(parsed, {}, require=True, history=no_history) == [
        "bytes > 0 (missing)"
    ]


def test_a_percentile_bound_compares_with_the_metrics_own_history() -> None:
    (slow,) = assertions.parse("duration", "<= p95 * 3")
    assert slow.bound == Percentile(95, 3)
    history = [60.0] * 48 + [100.0] * 2  # p95 of these 50 runs is 60s

    def past(metric: str) -> Sequence[float]:
        return history if metric == "duration" else []

    assert assertions.broken([slow], {"duration": 180}, False, past) == []
    assert assertions.broken([slow], {"duration": 181}, False, past) == [
        "duration <= p95 * 3 (got 3m 1s, p95 * 3 = 3m)"
    ]


def test_a_percentile_says_nothing_before_five_runs() -> None:
    (slow,) = assertions.parse("rows", "<= p50 * 2")
    few = [1.0] * (assertions.MIN_HISTORY - 1)
    assert assertions.broken([slow], {"rows": 1e9}, False, lambda m: few) == []
    enough = [1.0] * assertions.MIN_HISTORY
    assert assertions.broken([slow], {"rows": 1e9}, False, lambda m: enough) != []


def test_percentiles_are_values_that_were_seen() -> None:
    values = [float(v) for v in range(1, 101)]
    assert assertions.percentile(values, 95) == 95
    assert assertions.percentile(values, 100) == 100
    assert assertions.percentile([7.0], 50) == 7


@pytest.mark.parametrize(
    ("metric", "expression", "message"),
    [
        ("bytes", "bigger 0", "expected a comparison like"),
        ("bytes", "> zero", "expected a comparison like"),
        ("bytes", "> 2h", "units like '2h' are for duration only"),
        ("bytes", "=> 1", "expected a comparison like"),
        ("bytes", 0, "expected a comparison like"),
        ("bytes", [], "expected a comparison like"),
        ("bytes", "> nan", "expected a comparison like"),
        ("duration", "<= p0", "percentiles run from p1 to p100"),
        ("duration", "<= p95 * -1", "expected a positive factor"),
        ("duration", "<= p95 * x", "expected a positive factor"),
        ("Bytes", "> 0", "metric names are a-z"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(
    metric: str, expression: Any, message: str
) -> None:
    with pytest.raises(AssertionSyntaxError, match=message):
        assertions.parse(metric, expression)


def test_assertions_survive_the_trip_through_the_check_row() -> None:
    table = {"assert": {"bytes": "> 0", "duration": ["<= 2h", "<= p95 * 3"], "require": True}}
    stored = rules.from_config(table).to_json()
    again = rules.from_json(stored)
    assert again.require and again.assertions == (
        Assertion("bytes", ">", 0, "> 0"),
        Assertion("duration", "<=", 7200.0, "<= 2h"),
        Assertion("duration", "<=", Percentile(95, 3), "<= p95 * 3"),
    )
    assert rules.from_json(None) is rules.NO_RULES and not rules.NO_RULES


# -- the config file ----------------------------------------------------------------------

TWO_CHECKS = """\
[[check]]
name = "a"
period = "1h"
[check.assert]
bytes = "> 0"

[[check]]
name = "b"
period = "1h"

[check.assert]
count = ">= 1"
errors = "no more than 3"
"""


def test_config_errors_name_the_file_the_line_and_the_metric(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(TWO_CHECKS)
    assert str(raised.value).endswith(
        "heartbeatd.toml:13: assert.errors: expected a comparison like '> 0', '<= 2h' "
        "(duration) or '<= p95 * 3', got 'no more than 3'"
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('assert = { bytes = "> x" }\n', "4: assert.bytes: expected a comparison"),
        ('assert = "bytes > 0"\n', "4: assert: write assertions as a [check.assert] table"),
        ("[check.assert]\nrequire = 1\n", "5: assert.require: expected true or false"),
        ('json_metrics = "rows"\n', "4: json_metrics: expected a list of metric names"),
    ],
)
def test_other_rule_mistakes_are_located(make_config: MakeConfig, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        make_config(f'[[check]]\nname = "a"\nperiod = "1h"\n{toml}')


def test_a_config_with_assertions_loads_them(make_config: MakeConfig) -> None:
    config = make_config(TWO_CHECKS.replace('errors = "no more than 3"', 'errors = "== 0"'))
    a, b = config.checks
    assert [str(x) for x in a.rules.assertions] == ["bytes > 0"]
    assert [str(x) for x in b.rules.assertions] == ["count >= 1", "errors == 0"]


# -- pings --------------------------------------------------------------------------------


async def status_and_last_flip(daemon: Daemon) -> tuple[str, str, str]:
    ((status,),) = await daemon.query("SELECT status FROM checks")
    ((reason, detail),) = await daemon.query(
        "SELECT reason, detail FROM flips ORDER BY id DESC LIMIT 1"
    )
    return status, reason, detail


async def add_with(daemon: Daemon, table: dict[str, Any]) -> Any:
    """A check with these assertions; runs may take an hour, so only assertions take it down."""
    return await daemon.add(grace=3600.0, rules=rules.from_config({"assert": table}))


async def test_a_success_ping_breaking_an_assertion_takes_the_check_down(daemon: Daemon) -> None:
    check = await add_with(daemon, {"bytes": "> 0"})
    await daemon.client.get(f"/ping/{check.uuid}?bytes=100")
    assert (await status_and_last_flip(daemon))[0] == "up"
    assert (await daemon.client.get(f"/ping/{check.uuid}?bytes=0")).status == 200
    assert await status_and_last_flip(daemon) == ("down", "assertion", "bytes > 0 (got 0)")
    ((kind, notes),) = await daemon.query("SELECT kind, notes FROM pings WHERE n = 2")
    assert kind == "fail" and json.loads(notes) == ["assertion failed: bytes > 0 (got 0)"]
    await daemon.client.get(f"/ping/{check.uuid}?bytes=5")
    assert await status_and_last_flip(daemon) == ("up", "ping", "")


async def test_every_broken_assertion_is_named(daemon: Daemon) -> None:
    check = await add_with(daemon, {"bytes": "> 0", "errors": "== 0", "count": ">= 1"})
    await daemon.client.get(f"/ping/{check.uuid}?bytes=0&errors=3&count=9")
    _, _, detail = await status_and_last_flip(daemon)
    assert detail == "bytes > 0 (got 0); errors == 0 (got 3)"


async def test_a_ping_without_the_metric_passes_unless_required(daemon: Daemon) -> None:
    relaxed = await add_with(daemon, {"bytes": "> 0"})
    await daemon.client.get(f"/ping/{relaxed.uuid}")
    assert (await daemon.query("SELECT status FROM checks"))[0][0] == "up"
    strict = await daemon.add("strict", rules=rules.from_config(
        {"assert": {"bytes": "> 0", "require": True}}
    ))  # fmt: skip
    await daemon.client.get(f"/ping/{strict.uuid}")
    rows = await daemon.query("SELECT status FROM checks WHERE id = ?", strict.id)
    assert rows == [("down",)]


async def test_fail_start_and_log_pings_are_not_judged(daemon: Daemon) -> None:
    check = await add_with(daemon, {"bytes": "> 0", "require": True})
    for suffix in ("/start", "/log"):
        await daemon.client.get(f"/ping/{check.uuid}{suffix}?bytes=0")
    kinds = await daemon.query("SELECT kind FROM pings ORDER BY n")
    assert kinds == [("start",), ("log",)]
    await daemon.client.get(f"/ping/{check.uuid}/fail?bytes=0")
    assert await status_and_last_flip(daemon) == ("down", "fail", "")


async def test_the_runs_duration_from_start_and_finish_is_the_duration_metric(
    daemon: Daemon,
) -> None:
    check = await add_with(daemon, {"duration": ["<= 2h", ">= 30s"]})
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(45)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}")
    assert (await status_and_last_flip(daemon))[0] == "up"
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(3)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}")
    assert await status_and_last_flip(daemon) == ("down", "assertion", "duration >= 30s (got 3s)")


async def test_a_run_far_slower_than_its_history_is_an_anomaly(daemon: Daemon) -> None:
    check = await add_with(daemon, {"duration": "<= p95 * 3"})
    for seconds in [60, 62, 58, 61, 59, 63, 60, 57, 64, 60] * 2:  # a synthetic history of runs
        await daemon.client.get(f"/ping/{check.uuid}?metric=duration:{seconds}")
    assert (await status_and_last_flip(daemon))[0] == "up"
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(190)  # p95 of the history is 64s; 3 × 64 = 192
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}")
    assert (await status_and_last_flip(daemon))[0] == "up"
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(600)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}")
    assert await status_and_last_flip(daemon) == (
        "down", "assertion", "duration <= p95 * 3 (got 10m, p95 * 3 = 3m 12s)"
    )  # fmt: skip


async def test_the_history_reads_only_the_last_fifty_runs(daemon: Daemon) -> None:
    check = await add_with(daemon, {"rows": "<= p100"})
    for rows in [1000] * 5 + [10] * 50:  # the big runs are older than the last 50
        await daemon.client.get(f"/ping/{check.uuid}?rows={rows}")
    await daemon.client.get(f"/ping/{check.uuid}?rows=11")
    assert await status_and_last_flip(daemon) == (
        "down", "assertion", "rows <= p100 (got 11, p100 = 10)"
    )  # fmt: skip


# -- end to end ---------------------------------------------------------------------------


async def test_a_backup_that_wrote_nothing_alerts_with_the_assertion(
    start_daemon: Any, aiohttp_server: Any
) -> None:
    sink, hook = await json_sink(aiohttp_server)
    daemon = await start_daemon(f"""
[[check]]
name = "Nightly backup"
cron = "0 3 * * *"
grace = "1h"

[check.assert]
bytes = "> 0"
duration = "<= 2h"

[[notifier]]
name = "ops"
type = "webhook"
url = "{hook}"
default = true
""")
    (check,) = await daemon.store.list_checks()
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(600)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}&bytes=52000000000")
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(600)
    assert (await daemon.client.get(f"/ping/{check.uuid}?rid={RID}&bytes=0")).status == 200
    await eventually(lambda: sink.received)
    (alert,) = sink.received
    assert alert["event"] == "down"
    assert alert["summary"] == "Nightly backup is DOWN (assertion: bytes > 0 (got 0))"
    assert alert["flip"]["reason"] == "assertion"
    assert alert["flip"]["detail"] == "bytes > 0 (got 0)"
    assert alert["last_metrics"] == {"bytes": 0, "duration": 600.0}  # the run's other numbers


async def test_a_reloaded_config_changes_the_assertions_of_a_running_daemon(
    start_daemon: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = '[[check]]\nname = "backup"\nperiod = "1d"\n'
    daemon = await start_daemon(plain)
    (check,) = await daemon.store.list_checks()
    await daemon.client.get(f"/ping/{check.uuid}?bytes=0")
    assert (await status_and_last_flip(daemon))[0] == "up"
    config_file = tmp_path / "heartbeatd.toml"
    config_file.write_text(plain + '[check.assert]\nbytes = "> 0"\n')
    flags = {"db": str(tmp_path / "heartbeatd.db"), "listen": "127.0.0.1:0"}
    caplog.set_level(logging.INFO, "heartbeatd.reload")
    assert await Reloader(daemon.app, lambda: load_config(config_file, {}, flags)).reload()
    assert "changed check backup: rules" in caplog.text
    await daemon.client.get(f"/ping/{check.uuid}?bytes=0")
    assert await status_and_last_flip(daemon) == ("down", "assertion", "bytes > 0 (got 0)")


def test_an_alert_quotes_the_last_pings_metrics_as_a_person_reads_them() -> None:
    event = replace(make_event(), last_metrics={"bytes": 0, "count": 12.5, "duration": 4500.0})
    assert "\nLast metrics: bytes=0 count=12.5 duration=1h 15m\n" in event.text()
    assert "Last metrics" not in make_event().text()  # a ping without numbers: no line
