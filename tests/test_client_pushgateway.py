"""The real prometheus_client pushes to heartbeatd as it would to a Prometheus Pushgateway.

push_to_gateway (PUT), pushadd_to_gateway (POST) and delete_from_gateway (DELETE), with
grouping keys in both of the client's encodings, run unchanged against the real app on a
loopback port (the client blocks: each call runs in a thread). A push is a ping of the check
whose slug is the job: the client is happy, the pushed text is the ping's body, its samples are
the ping's metrics (assertions read them), a `_failed`/`_success` gauge can fail the run, an
unknown job is a 404 the client raises on, and the parse of a hostile push stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
from typing import Any

import pytest
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    delete_from_gateway,
    generate_latest,
    push_to_gateway,
    pushadd_to_gateway,
)

from heartbeatd.core import rules
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.core.rules.metrics import MAX_SAMPLES
from heartbeatd.web.pushgateway import PARSE_LIMIT, PROTOBUF_NOTE
from tests.conftest import Daemon


def registry_of(**values: float) -> CollectorRegistry:
    """A registry with one gauge per value, as a batch job fills one before it pushes."""
    registry = CollectorRegistry()
    for name, value in values.items():
        Gauge(name, f"{name} of the last run", registry=registry).set(value)
    return registry


async def gateway(daemon: Daemon) -> str:
    """What a user passes as the gateway: host:port and the prefix with the ping key."""
    return f"127.0.0.1:{daemon.client.server.port}/pushgateway/{await daemon.store.ping_key()}"


async def pings(daemon: Daemon) -> list[tuple[Any, ...]]:
    rows = await daemon.query("SELECT kind, method, body, body_size, metrics, notes FROM pings")
    return [
        (kind, method, body, size, json.loads(metrics or "{}"), json.loads(notes or "[]"))
        for kind, method, body, size, metrics, notes in rows
    ]


async def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
    """The status and body of the error the client raises (and its connection closed)."""
    with pytest.raises(urllib.error.HTTPError) as raised:
        await asyncio.to_thread(call, *args, **kwargs)
    with raised.value as error:
        return error.code, error.read()


async def status_of(daemon: Daemon, slug: str) -> str:
    return (await daemon.query("SELECT status FROM checks WHERE slug = ?", slug))[0][0]


@pytest.mark.parametrize("compression", [None, "gzip"])
async def test_push_to_gateway_is_a_success_ping_with_the_pushed_text_as_body(
    daemon: Daemon, compression: str | None
) -> None:
    await daemon.add("nightly-backup")
    registry = registry_of(backup_bytes=5.2e9, backup_files=1234)
    await asyncio.to_thread(
        push_to_gateway, await gateway(daemon), job="nightly-backup", registry=registry,
        grouping_key={"instance": "db1"}, compression=compression,
    )  # fmt: skip
    ((kind, method, body, size, metrics, notes),) = await pings(daemon)
    assert (kind, method, notes) == ("success", "PUT", [])
    assert body == generate_latest(registry) and size == len(body)
    assert metrics == {"backup_bytes": 5.2e9, "backup_files": 1234}
    assert await status_of(daemon, "nightly-backup") == "up"


async def test_pushadd_with_base64_grouping_keys_is_a_post_ping(daemon: Daemon) -> None:
    """Values with "/" or " ", and empty ones, are sent as `<label>@base64/<value>`."""
    await daemon.add("nightly-backup")
    grouping = {"path": "/srv/data", "host": "db 1", "empty": "", "plain": "x+y"}
    await asyncio.to_thread(
        pushadd_to_gateway, await gateway(daemon), job="nightly-backup",
        registry=registry_of(rows=7), grouping_key=grouping,
    )  # fmt: skip
    assert [(kind, method, m) for kind, method, _, _, m, _ in await pings(daemon)] == [
        ("success", "POST", {"rows": 7})
    ]


async def test_a_job_name_with_a_slash_names_no_check_and_is_refused_by_404(
    daemon: Daemon,
) -> None:
    await daemon.add("nightly-backup")
    url = await gateway(daemon)
    assert await refused(push_to_gateway, url, job="nightly/backup", registry=registry_of()) == (
        404, b"not found"
    )  # fmt: skip
    assert await pings(daemon) == []


@pytest.mark.parametrize(
    "values", [{"job_failed": 1}, {"backup_failed": 2}, {"job_success": 0}, {"sync_success": 0}]
)
async def test_a_failed_or_unsuccessful_gauge_makes_the_push_a_failure(
    daemon: Daemon, values: dict[str, float]
) -> None:
    await daemon.add("nightly-backup")
    registry = registry_of(backup_bytes=10, **values)
    await asyncio.to_thread(
        push_to_gateway, await gateway(daemon), job="nightly-backup", registry=registry
    )
    ((kind, _, _, _, metrics, notes),) = await pings(daemon)
    (name,) = values
    assert kind == "fail" and metrics[name] == values[name]
    assert notes == [f"pushed {name} {values[name]:g}: a failure"]
    assert await status_of(daemon, "nightly-backup") == "down"


@pytest.mark.parametrize("values", [{"job_failed": 0}, {"job_success": 1}])
async def test_a_zero_failed_or_a_set_success_gauge_is_a_success(
    daemon: Daemon, values: dict[str, float]
) -> None:
    await daemon.add("nightly-backup")
    await asyncio.to_thread(
        push_to_gateway, await gateway(daemon), job="nightly-backup", registry=registry_of(**values)
    )
    assert [p[0] for p in await pings(daemon)] == ["success"]
    assert await status_of(daemon, "nightly-backup") == "up"


async def test_an_assertion_reads_a_pushed_gauge(daemon: Daemon) -> None:
    assertion = rules.from_config({"assert": {"backup_bytes": "> 0"}})
    await daemon.add("nightly-backup", rules=assertion)
    url = await gateway(daemon)
    await asyncio.to_thread(
        push_to_gateway, url, job="nightly-backup", registry=registry_of(backup_bytes=5.2e9)
    )
    assert await status_of(daemon, "nightly-backup") == "up"
    await asyncio.to_thread(
        push_to_gateway, url, job="nightly-backup", registry=registry_of(backup_bytes=0)
    )
    assert await status_of(daemon, "nightly-backup") == "down"
    assert await daemon.query("SELECT reason, detail FROM flips ORDER BY id DESC LIMIT 1") == [
        ("assertion", "backup_bytes > 0 (got 0)")
    ]


async def test_delete_from_gateway_is_answered_and_records_nothing(daemon: Daemon) -> None:
    await daemon.add("nightly-backup")
    await asyncio.to_thread(
        delete_from_gateway, await gateway(daemon), job="nightly-backup",
        grouping_key={"instance": "db1"},
    )  # fmt: skip
    assert await pings(daemon) == []
    response = await daemon.client.delete(
        f"/pushgateway/{await daemon.store.ping_key()}/metrics/job/nightly-backup"
    )
    assert response.status == 202


@pytest.mark.parametrize("call", [push_to_gateway, pushadd_to_gateway, delete_from_gateway])
async def test_an_unknown_job_is_a_plain_404_the_client_raises_on(
    daemon: Daemon, call: Any
) -> None:
    await daemon.add("nightly-backup")
    kwargs = {} if call is delete_from_gateway else {"registry": registry_of(rows=1)}
    answer = await refused(call, await gateway(daemon), job="weekly-backup", **kwargs)
    assert answer == (404, b"not found")
    assert await daemon.query("SELECT count(*) FROM checks") == [(1,)]
    assert await pings(daemon) == []


@pytest.mark.parametrize("key", ["wrong-key", "a" * 22])
async def test_a_wrong_ping_key_is_a_plain_404(daemon: Daemon, key: str) -> None:
    await daemon.add("nightly-backup")
    url = f"127.0.0.1:{daemon.client.server.port}/pushgateway/{key}"
    answer = await refused(push_to_gateway, url, job="nightly-backup", registry=registry_of())
    assert answer == (404, b"not found")
    assert await pings(daemon) == []


async def test_with_pushgateway_create_a_new_job_creates_its_check(start_daemon: Any) -> None:
    daemon = await start_daemon("pushgateway_create = true\n")
    await asyncio.to_thread(
        push_to_gateway, await gateway(daemon), job="weekly-report", registry=registry_of(rows=3)
    )
    assert await daemon.query("SELECT name, slug, status FROM checks") == [
        ("weekly-report", "weekly-report", "up")
    ]
    assert [p[4] for p in await pings(daemon)] == [{"rows": 3}]


async def test_a_protobuf_push_is_a_success_ping_its_samples_unread(daemon: Daemon) -> None:
    """Go's client pushes length-delimited protobuf; its bytes are not read as text lines."""
    await daemon.add("nightly-backup")
    body = b'\x1f\n\njob_failed\x18\x00"\x0b\x12\t\t\x00\x00\x00\x00\x00\x00\xf0?'
    content_type = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
    response = await daemon.client.put(
        f"/pushgateway/{await daemon.store.ping_key()}/metrics/job/nightly-backup",
        data=body, headers={"Content-Type": content_type + "encoding=delimited"},
    )  # fmt: skip
    assert response.status == 200
    assert await pings(daemon) == [("success", "PUT", body, len(body), {}, [PROTOBUF_NOTE])]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/job", "invalid url format"),  # no job
        ("/jobs/nightly-backup", "invalid url format"),
        ("/job/nightly-backup/instance", "invalid url format"),  # a label without a value
        ("/job/nightly-backup/0bad/x", "invalid url format"),  # not a label name
        ("/job/nightly-backup/instance@base64/%25%25", "invalid base64 encoding in url"),
    ],
)
async def test_a_malformed_grouping_key_is_a_plain_400(
    daemon: Daemon, path: str, text: str
) -> None:
    await daemon.add("nightly-backup")
    prefix = f"/pushgateway/{await daemon.store.ping_key()}/metrics"
    response = await daemon.client.put(prefix + path, data=b"rows 1\n")
    assert (response.status, await response.text()) == (400, text)
    assert await pings(daemon) == []


async def test_a_push_over_the_body_limit_is_cut_but_its_samples_are_all_read(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon("ping_body_limit = 200\n")
    await daemon.add("nightly-backup")
    values = {f"table_{n}_rows": n for n in range(10)}
    registry = registry_of(**values, job_failed=1)  # last: far past the 200 stored bytes
    await asyncio.to_thread(
        push_to_gateway, await gateway(daemon), job="nightly-backup", registry=registry
    )
    ((kind, _, body, size, metrics, _),) = await pings(daemon)
    pushed = generate_latest(registry)
    assert (body, size) == (pushed[:200], len(pushed))
    assert kind == "fail" and metrics == {**values, "job_failed": 1}


async def test_a_sample_cut_by_the_parse_limit_is_not_read_as_a_smaller_number(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon("ping_body_limit = 1000\n")
    await daemon.add("nightly-backup")
    head = b"rows 1\n# " + b"x" * (PARSE_LIMIT - 25) + b"\n"
    body = head + b"backup_bytes 5200000000\n"
    assert body[:PARSE_LIMIT].endswith(b"\nbackup_bytes 52")
    response = await daemon.client.put(
        f"/pushgateway/{await daemon.store.ping_key()}/metrics/job/nightly-backup", data=body
    )
    assert response.status == 200
    ((_, _, _, size, metrics, _),) = await pings(daemon)
    assert size == len(body) and metrics == {"rows": 1}


def test_a_push_of_many_samples_is_read_only_to_the_sample_cap() -> None:
    text = "".join(f'job_failed{{n="{n}"}} 0\n' for n in range(MAX_SAMPLES)) + "job_failed 1\n"
    pushed = ping_metrics.from_prometheus(text)
    assert len(pushed.samples) == MAX_SAMPLES and ("job_failed", 1) not in pushed.samples
    assert f"stopped reading after {MAX_SAMPLES} samples" in pushed.notes


@pytest.mark.parametrize(
    "line",
    [
        "a" + " " * 1000 + "x y",  # spaces a careless pattern splits every way
        "a{" + '"' * 1000,  # an open label value, then quotes
        "a{" + '\\"' * 500,
        'a{x="' + "\\\\" * 500,
        "a{" + "b" * 1000,  # braces never closed
        "a 1" + " \t" * 500 + "x y",
    ],
)
def test_a_hostile_push_is_parsed_in_linear_time(line: str) -> None:
    """A PARSE_LIMIT body of the worst lines measured (~2 ms on a loaded machine): a pattern
    that backtracked would take seconds to minutes."""
    body = "\n".join([line[:1000]] * (PARSE_LIMIT // 1000))
    started = time.perf_counter()
    pushed = ping_metrics.from_prometheus(body)
    assert time.perf_counter() - started < 0.5
    assert pushed.metrics == {}


async def test_a_push_with_a_wrong_key_is_answered_404_before_its_1_mb_body(
    daemon: Daemon,
) -> None:
    """Only the headers are sent, declaring 1 MB: a guessed key costs no body and no wait."""
    await daemon.add("nightly-backup")
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.client.server.port)
    path = "/pushgateway/not-the-ping-key/metrics/job/nightly-backup"
    writer.write(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=1.0)
    finally:
        writer.close()
    assert status_line == b"HTTP/1.1 404 Not Found\r\n"
