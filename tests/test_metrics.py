"""/metrics (metrics.py): read back with a small parser of the text format, as Prometheus would."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core.config import ConfigError
from heartbeatd.store import Store
from heartbeatd.store.migrations import MIGRATIONS
from tests.conftest import Daemon, MakeConfig, eventually

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
KEY = "0123456789abcdef0123"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Samples by (name, labels); fails on a line Prometheus would refuse, and on a sample whose
    family has no HELP and TYPE before it."""
    samples: Samples = {}
    declared: dict[str, set[str]] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# "):
            keyword, name, rest = line[2:].split(" ", 2)
            declared.setdefault(name, set()).add(keyword)
            if keyword == "TYPE":
                assert rest in ("gauge", "counter")
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match.groups()
        assert declared.get(name) == {"HELP", "TYPE"}, f"{name} has no HELP and TYPE"
        labels = {}
        position = 0
        while label_text and position < len(label_text):
            pair = LABEL.match(label_text, position)
            assert pair, f"bad labels in {line!r}"
            labels[pair[1]] = re.sub(r"\\[\\\"n]", lambda m: UNESCAPE[m[0]], pair[2])
            position = pair.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def scrape(daemon: Daemon, **kwargs: Any) -> Samples:
    response = await daemon.client.get("/metrics", **kwargs)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(await response.text())


def status_of(samples: Samples, slug: str = "backup") -> str:
    """The one status whose gauge is 1; fails unless exactly one is, of all six."""
    found = {
        dict(labels)["status"]: v
        for (metric, labels), v in samples.items()
        if metric == "heartbeatd_check_status" and dict(labels)["slug"] == slug
    }
    assert set(found) == {"new", "up", "grace", "down", "paused", "started"}
    (status,) = [s for s, v in found.items() if v == 1.0]
    assert sum(found.values()) == 1.0
    return status


async def test_it_follows_a_check_from_new_to_up_to_late_to_down(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    labels = {"name": "backup", "slug": "backup", "tags": ""}
    samples = await scrape(daemon)
    assert status_of(samples) == "new"
    assert value(samples, "heartbeatd_check_last_ping_age_seconds", **labels) is None
    assert value(samples, "heartbeatd_pings_received_total", kind="success") == 0

    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(30)
    samples = await scrape(daemon)
    assert status_of(samples) == "up"
    assert value(samples, "heartbeatd_check_last_ping_age_seconds", **labels) == 30.0
    assert value(samples, "heartbeatd_checks", status="up") == 1
    assert value(samples, "heartbeatd_pings_received_total", kind="success") == 1
    assert value(samples, "heartbeatd_wheel_size") == 1

    await daemon.advance(35)
    assert status_of(await scrape(daemon)) == "grace"

    await daemon.advance(10)
    samples = await scrape(daemon)
    assert status_of(samples) == "down"
    assert value(samples, "heartbeatd_checks", status="down") == 1
    assert value(samples, "heartbeatd_checks", status="up") == 0
    assert value(samples, "heartbeatd_wheel_size") == 0

    async def alert_sent() -> bool:
        samples = await scrape(daemon)
        return value(samples, "heartbeatd_notifications_total", result="sent") == 1

    await eventually(alert_sent)
    samples = await scrape(daemon)
    assert value(samples, "heartbeatd_outbox_depth") == 0
    assert value(samples, "heartbeatd_notifications_total", result="failed") == 0


async def test_it_counts_pings_by_kind_from_every_url_form(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}/start")
    await daemon.client.get(f"/ping/{check.uuid}/log")
    await daemon.client.get(f"/api/push/{check.uuid}?status=down")
    await daemon.client.get(f"/snitch/{check.uuid}")
    await daemon.client.get(f"/ping/{'0' * 8}-0000-0000-0000-{'0' * 12}")  # unknown: not counted
    samples = await scrape(daemon)
    counts = {kind: value(samples, "heartbeatd_pings_received_total", kind=kind)
              for kind in ("success", "start", "fail", "log")}  # fmt: skip
    assert counts == {"success": 1, "start": 1, "fail": 1, "log": 1}


async def test_it_shows_the_last_run_duration_and_a_started_run(daemon: Daemon) -> None:
    check = await daemon.add(tags=("db", "nightly"))
    labels = {"name": "backup", "slug": "backup", "tags": "db nightly"}
    await daemon.client.get(f"/ping/{check.uuid}/start")
    assert status_of(await scrape(daemon)) == "started"
    await daemon.advance(4.5)
    await daemon.client.get(f"/ping/{check.uuid}")
    samples = await scrape(daemon)
    assert value(samples, "heartbeatd_check_last_duration_seconds", **labels) == 4.5


async def test_label_values_are_escaped(daemon: Daemon) -> None:
    await daemon.add('a"b\nc\\d', slug="weird")
    response = await daemon.client.get("/metrics")
    text = await response.text()
    assert 'name="a\\"b\\nc\\\\d"' in text
    samples = parse(text)
    assert status_of(samples, slug="weird") == "new"
    assert any(dict(labels).get("name") == 'a"b\nc\\d' for _, labels in samples)


async def test_it_never_shows_a_check_uuid(daemon: Daemon) -> None:
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}")
    assert check.uuid not in await (await daemon.client.get("/metrics")).text()


async def test_the_daemon_reports_itself(daemon: Daemon) -> None:
    samples = await scrape(daemon)
    assert value(samples, "heartbeatd_up") == 1
    assert value(samples, "heartbeatd_start_time_seconds") == daemon.clock.now()
    assert value(samples, "heartbeatd_checks", status="new") == 0


@pytest.mark.parametrize(
    "headers_or_query",
    [
        {},
        {"headers": {"Authorization": "Bearer wrong-key-wrong-key"}},
        {"headers": {"Authorization": f"Basic {KEY}"}},
        {"params": {"key": KEY[:-1]}},
    ],
)
async def test_a_metrics_key_refuses_scrapes_without_it(
    start_daemon: Any, headers_or_query: dict[str, Any]
) -> None:
    daemon = await start_daemon(f'metrics_key = "{KEY}"\n')
    response = await daemon.client.get("/metrics", **headers_or_query)
    assert response.status == 401
    assert await response.text() == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers_or_query",
    [{"headers": {"Authorization": f"Bearer {KEY}"}}, {"params": {"key": KEY}}],
)
async def test_a_metrics_key_admits_a_bearer_token_or_key_parameter(
    start_daemon: Any, headers_or_query: dict[str, Any]
) -> None:
    daemon = await start_daemon(f'metrics_key = "{KEY}"\n')
    assert value(await scrape(daemon, **headers_or_query), "heartbeatd_up") == 1


def test_a_short_metrics_key_is_a_located_config_error(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError) as error:
        make_config('listen = "127.0.0.1:0"\nmetrics_key = "secret"\n')
    assert str(error.value).endswith(
        "heartbeatd.toml:2: metrics_key: expected at least 16 characters, "
        "e.g. from `openssl rand -hex 16`"
    )


# -- the numbers pings carry (issue 8) --------------------------------------------------------


def metric_samples(samples: Samples) -> dict[tuple[str, str], float]:
    """(slug, metric) -> value of every heartbeatd_check_metric sample."""
    return {
        (dict(labels)["slug"], dict(labels)["metric"]): v
        for (name, labels), v in samples.items()
        if name == "heartbeatd_check_metric"
    }


async def test_the_last_value_of_each_ping_metric_is_exported(daemon: Daemon) -> None:
    backup = await daemon.add(tags=("db",))
    quiet = await daemon.add("quiet")
    await daemon.client.get(f"/ping/{backup.uuid}?bytes=5.2e9&count=12&errors=0")
    await daemon.client.get(f"/ping/{backup.uuid}?count=13&ratio=0.25")
    await daemon.client.get(f"/ping/{backup.uuid}/start")
    await daemon.client.get(f"/ping/{quiet.uuid}")
    response = await daemon.client.get("/metrics")
    text = await response.text()
    assert "# TYPE heartbeatd_check_metric gauge" in text
    assert (
        'heartbeatd_check_metric{name="backup",slug="backup",tags="db",metric="bytes"} 5200000000'
        in text.splitlines()
    )
    assert metric_samples(parse(text)) == {
        ("backup", "bytes"): 5.2e9,
        ("backup", "count"): 13,
        ("backup", "errors"): 0,
        ("backup", "ratio"): 0.25,
    }


async def test_metric_labels_are_escaped_and_a_deleted_check_leaves_none(daemon: Daemon) -> None:
    weird = await daemon.add('a"b\nc\\d', slug="weird")
    gone = await daemon.add("gone")
    await daemon.client.get(f"/ping/{weird.uuid}?rows=3")
    await daemon.client.get(f"/ping/{gone.uuid}?rows=4")
    await daemon.store.remove("gone")
    text = await (await daemon.client.get("/metrics")).text()
    assert 'heartbeatd_check_metric{name="a\\"b\\nc\\\\d",slug="weird"' in text
    samples = parse(text)
    assert metric_samples(samples) == {("weird", "rows"): 3}
    assert any(dict(labels).get("name") == 'a"b\nc\\d' for _, labels in samples)


async def test_a_last_value_outlives_the_pings_retention(start_daemon: Any) -> None:
    daemon = await start_daemon("ping_retention = 2\n")
    check = await daemon.add()
    await daemon.client.get(f"/ping/{check.uuid}?bytes=7")
    for _ in range(3):
        await daemon.client.get(f"/ping/{check.uuid}?count=1")
    assert await daemon.query("SELECT count(*) FROM pings WHERE metrics LIKE '%bytes%'") == [(0,)]
    assert metric_samples(await scrape(daemon)) == {("backup", "bytes"): 7, ("backup", "count"): 1}


def test_an_older_database_gets_its_last_values_from_the_stored_pings(tmp_path: Path) -> None:
    """A database from before the metric_last table (schema step 5) is filled in on upgrade."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:5]:
        conn.executescript(step)
    conn.execute("PRAGMA user_version = 5")
    conn.execute(
        "INSERT INTO checks (id, uuid, name, period, grace, created) "
        "VALUES (1, ?, 'old', 60, 10, 0)",
        (f"{'0' * 8}-0000-0000-0000-{'0' * 12}",),
    )
    for n, metrics in enumerate(['{"bytes": 5, "count": 1}', None, '{"count": 2}'], start=1):
        conn.execute(
            "INSERT INTO pings (check_id, n, created, kind, scheme, method, remote_addr, ua, "
            "body_size, metrics) VALUES (1, ?, ?, 'success', 'http', 'GET', '::1', '', 0, ?)",
            (n, n, metrics),
        )
    conn.close()

    async def read() -> dict[int, dict[str, float]]:
        async with Store(path) as store:
            return await store.last_metrics()

    assert asyncio.run(read()) == {1: {"bytes": 5, "count": 2}}
