"""Numbers in pings (query, Cronitor form, JSON body): stored with the ping, junk noted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.core import rules
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.core.rules.metrics import MAX_METRICS
from heartbeatd.store import ByUuid, CheckDefinition, PingIn, Store
from tests.conftest import Daemon

RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"


async def last_ping(daemon: Daemon) -> tuple[str, dict[str, Any], list[str]]:
    (kind, metrics, notes), *_ = await daemon.query(
        "SELECT kind, metrics, notes FROM pings ORDER BY id DESC LIMIT 1"
    )
    return kind, json.loads(metrics or "{}"), json.loads(notes or "[]")


async def test_query_parameters_are_stored_as_metrics(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}?count=1234&bytes=5.2e9&errors=0")
    assert response.status == 200
    assert await last_ping(daemon) == ("success", {"count": 1234, "bytes": 5.2e9, "errors": 0}, [])


async def test_reserved_parameters_are_not_metrics(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}&rows=7")
    assert await last_ping(daemon) == ("success", {"rows": 7}, [])


async def test_a_ping_without_numbers_stores_no_metrics(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}")
    assert await daemon.query("SELECT metrics, notes FROM pings") == [(None, None)]


async def test_cronitor_metric_parameters_are_understood(daemon: Daemon) -> None:
    check = await daemon.add()
    url = f"/ping/{check.uuid}?metric=count:12&metric=duration:3.5&metric=error_count:2"
    await daemon.client.get(url)
    assert await last_ping(daemon) == ("success", {"count": 12, "duration": 3.5, "errors": 2}, [])


@pytest.mark.parametrize(
    ("query", "note"),
    [
        ("bytes=nan", "ignored bytes='nan': not a finite number"),
        ("bytes=inf", "ignored bytes='inf': not a finite number"),
        ("bytes=-Infinity", "ignored bytes='-Infinity': not a finite number"),
        ("bytes=1e400", "ignored bytes='1e400': not a finite number"),
        ("bytes=lots", "ignored bytes='lots': not a finite number"),
        ("bytes=0x10", "ignored bytes='0x10': not a finite number"),
        ("bytes=", "ignored bytes='': not a finite number"),
        ("Bytes=1", "ignored metric 'Bytes': names are a-z, 0-9 and _, up to 32"),
        ("metric=rows:3", "ignored metric='rows:3': expected count:N, duration:N or error_count:N"),
    ],
)
async def test_malformed_values_are_noted_and_the_ping_still_counts(
    daemon: Daemon, query: str, note: str
) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}?{query}&count=1")
    assert response.status == 200
    assert await last_ping(daemon) == ("success", {"count": 1}, [note])
    assert (await daemon.query("SELECT status FROM checks"))[0][0] == "up"


async def test_a_thousand_parameters_keep_the_first_sixteen_and_say_so(daemon: Daemon) -> None:
    check = await daemon.add()
    query = "&".join(f"m{i}=1" for i in range(1000))  # 7 kB: within aiohttp's URL limit
    response = await daemon.client.get(f"/ping/{check.uuid}?{query}")
    assert response.status == 200
    _, metrics, notes = await last_ping(daemon)
    assert metrics == {f"m{i}": 1 for i in range(MAX_METRICS)}
    assert notes == [f"ignored 984 metrics over the limit of {MAX_METRICS}"]


async def test_a_thousand_bad_parameters_leave_a_short_note(daemon: Daemon) -> None:
    check = await daemon.add()
    query = "&".join(f"m{i}=x" for i in range(1000))
    assert (await daemon.client.get(f"/ping/{check.uuid}?{query}")).status == 200
    _, metrics, notes = await last_ping(daemon)
    assert metrics == {} and len(notes) == ping_metrics.MAX_NOTES + 1
    assert notes[-1] == "more values ignored"


async def test_named_fields_of_a_json_body_are_metrics(daemon: Daemon) -> None:
    check = await daemon.add(rules=rules.from_config({"json_metrics": ["rows", "bytes"]}))
    body = {"rows": 10, "bytes": 2048.5, "other": 3, "status": "ok"}
    await daemon.client.post(f"/ping/{check.uuid}?errors=0", json=body)
    assert await last_ping(daemon) == ("success", {"rows": 10, "bytes": 2048.5, "errors": 0}, [])


async def test_json_fields_are_read_only_from_json_bodies(daemon: Daemon) -> None:
    check = await daemon.add(rules=rules.from_config({"json_metrics": ["rows"]}))
    await daemon.client.post(f"/ping/{check.uuid}", data=b'{"rows": 10}')
    assert await last_ping(daemon) == ("success", {}, [])


@pytest.mark.parametrize(
    ("body", "note"),
    [
        (b'{"rows": NaN}', "ignored JSON field rows: not a finite number"),
        (b'{"rows": 1e400}', "ignored JSON field rows: not a finite number"),
        (b'{"rows": 1' + b"0" * 400 + b"}", "ignored JSON field rows: not a finite number"),
        (b'{"rows": "12"}', "ignored JSON field rows: not a number"),
        (b'{"rows": true}', "ignored JSON field rows: not a number"),
        (b'{"rows": ', "body is not valid JSON: no metrics read from it"),
        (b"[1, 2]", "JSON body is not an object: no metrics read from it"),
    ],
)
async def test_bad_json_bodies_are_noted_and_the_ping_still_counts(
    daemon: Daemon, body: bytes, note: str
) -> None:
    check = await daemon.add(rules=rules.from_config({"json_metrics": ["rows"]}))
    response = await daemon.client.post(
        f"/ping/{check.uuid}", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert await last_ping(daemon) == ("success", {}, [note])


def test_check_show_lists_each_pings_metrics_and_the_assertions(tmp_path: Path) -> None:
    db = tmp_path / "heartbeatd.db"

    async def ping_twice() -> None:
        async with Store(db) as store:
            backup = rules.from_config({"assert": {"bytes": "> 0"}})
            check = await store.add_check(
                CheckDefinition("backup", "backup", 60.0, rules=backup), 0
            )
            for metrics, notes in (((("bytes", 5),), ()), ((("bytes", 0), ("count", 3)), ("x",))):
                ping = PingIn("success", None, None, "GET", "http", "127.0.0.1", "curl", b"", 0,
                              metrics=metrics, notes=notes)  # fmt: skip
                await store.record_ping(ByUuid(check.uuid), ping, 1.0)

    asyncio.run(ping_twice())
    shown = CliRunner().invoke(cli, ["check", "show", "backup", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert "assert:" in shown.output and "bytes > 0" in shown.output
    assert "#2 " in shown.output and " bytes=0 count=3 " in shown.output
    assert "assertion failed: bytes > 0 (got 0)" in shown.output
    as_json = CliRunner().invoke(cli, ["check", "show", "backup", "--json", "--db", str(db)])
    info = json.loads(as_json.output)
    assert info["rules"] == {"assert": {"bytes": ["> 0"]}}
    assert info["pings"][0]["metrics"] == {"bytes": 0, "count": 3}
    assert info["pings"][0]["notes"] == ["x", "assertion failed: bytes > 0 (got 0)"]


async def test_last_metrics_gives_each_metrics_newest_value(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}?rows=1&bytes=10")
    await daemon.client.get(f"/ping/{check.uuid}?rows=2")
    await daemon.client.get(f"/ping/{check.uuid}")
    assert await daemon.store.last_metrics() == {check.id: {"rows": 2, "bytes": 10}}


async def test_a_pinger_inventing_metric_names_cannot_grow_the_latest_values(
    daemon: Daemon,
) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}?rows=1")
    for batch in range(20):  # 320 new names, 16 a ping
        names = "&".join(f"m{batch}_{i}=1" for i in range(16))
        await daemon.client.get(f"/ping/{check.uuid}?{names}")
    await daemon.client.get(f"/ping/{check.uuid}?rows=7&brand_new=1")
    latest = (await daemon.store.last_metrics())[check.id]
    assert len(latest) == 64
    assert latest["rows"] == 7 and "brand_new" not in latest  # known names still move


async def test_a_metric_name_with_a_trailing_newline_is_ignored(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}?rows%0A=1")
    assert await daemon.store.last_metrics() == {}


async def test_undecodable_query_bytes_are_noted_not_a_500(daemon: Daemon) -> None:
    check = await daemon.add()
    response = await daemon.client.get(f"/ping/{check.uuid}?b%ff=1&rows=%ff%fe&count=2")
    assert response.status == 200
    kind, metrics, notes = await last_ping(daemon)
    assert (kind, metrics, len(notes)) == ("success", {"count": 2}, 2)
