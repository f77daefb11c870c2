"""Generated requests (schemathesis, from our OpenAPI description) against a real daemon
process: no answer may be a 500 or differ from the description.

Bounded for CI: MAX_EXAMPLES per operation (valid and invalid ones), 14 operations, under a
minute here. Half of the requests that name a check name a real one, so bodies are tried on a
check that exists.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from heartbeatd.web.api.openapi import OPENAPI
from heartbeatd.web.api.schema import FIELDS

MAX_EXAMPLES = 40
# aiohttp answers a longer request line itself, before any route: 400 in text/plain. Such a
# request never reaches the API, so its answer is not the API description's to promise.
MAX_REQUEST_LINE = 8190
schema = schemathesis.openapi.from_dict(OPENAPI)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def heartbeatd(*args: str) -> list[str]:
    return [sys.executable, "-m", "heartbeatd", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        assert process.poll() is None, "heartbeatd exited"
        try:
            with urllib.request.urlopen(f"{base}/api/v3/status/", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("heartbeatd did not start")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(base URL, read-write key, UUID of a check) of a daemon serving on loopback."""
    db = str(Path(tmp_path_factory.mktemp("fuzz")) / "heartbeatd.db")
    create = heartbeatd("apikey", "create", "--db", db)
    key = subprocess.run(create, capture_output=True, text=True, check=True).stdout.strip()
    added = subprocess.run(heartbeatd("check", "add", "fuzzed", "--db", db, "--json"),
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    check_uuid = added.split('"uuid": "')[1].split('"')[0]
    port = free_port()
    serve = heartbeatd("serve", "--db", db, "--listen", f"127.0.0.1:{port}")
    process = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
        yield base, key, check_uuid
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_openapi_description_is_served(server: tuple[str, str, str]) -> None:
    base, _, _ = server
    with urllib.request.urlopen(f"{base}/api/v3/openapi.json", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        assert b'"openapi": "3.1.0"' in response.read()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_gets_a_500_or_breaks_the_description(
    case: schemathesis.Case, server: tuple[str, str, str]
) -> None:
    base, key, check_uuid = server
    code = case.path_parameters.get("code") if case.path_parameters else None
    if code is not None and case.method != "DELETE" and len(str(code)) % 2 == 0:
        case.path_parameters["code"] = check_uuid
    assume(len(request_target(case, base)) < MAX_REQUEST_LINE - len("DELETE  HTTP/1.1"))
    case.call_and_validate(base_url=base, headers={"X-Api-Key": key}, checks=CHECKS)


def request_target(case: schemathesis.Case, base: str) -> str:
    """The path and query string `case` sends, as encoded on the request line."""
    sent = case.as_transport_kwargs(base_url=base)
    return requests.Request(case.method, sent["url"], params=sent.get("params")).prepare().path_url


# Any JSON at all, with any text, under the field names the API reads. Built from characters
# because st.text never yields lone surrogates, which JSON's "\\ud800" escapes can carry.
CHARACTER = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff"])
ANY_TEXT = st.lists(CHARACTER, max_size=20).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
ANY_BODY = st.dictionaries(st.sampled_from([*FIELDS, "api_key", "other"]), JSON_VALUES, max_size=6)
# Mostly valid bodies, so that odd text reaches the database instead of an earlier 400.
FREE_TEXT = ("name", "desc", "tags", "success_kw", "failure_re")
TEXT_BODY = st.dictionaries(st.sampled_from(FREE_TEXT), ANY_TEXT, max_size=3).map(
    lambda body: {**body, "filter_http_body": True}
)
BODIES = ANY_BODY | TEXT_BODY


def post(url: str, key: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"X-Api-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


@given(body=BODIES, update=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_json_body_gets_a_500(server: tuple[str, str, str], body: dict, update: bool) -> None:
    base, key, check_uuid = server
    url = f"{base}/api/v3/checks/{check_uuid}" if update else f"{base}/api/v3/checks/"
    status = post(url, key, json.dumps(body).encode())
    assert status in (200, 201, 400), (status, body)
