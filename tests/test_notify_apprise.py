"""Apprise URLs (heartbeatd/notify/apprise_urls.py), delivered to a loopback JSON sink.

Apprise is the real library: only the receiving end is a stand-in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError, build_notifiers
from heartbeatd.notify.apprise_urls import AppriseNotifier
from heartbeatd.notify.options import OptionError
from tests.conftest import eventually
from tests.notify_helpers import (
    UUID,
    Service,
    assert_option_refused,
    make_event,
    serve,
)

VALID: dict[str, object] = {"urls": ["json://127.0.0.1/x"]}


class JsonSink(Service):
    """What Apprise's json:// URLs POST to; `hold` keeps answers back until it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.fail_paths: dict[str, list[int]] = {}
        self.hold: asyncio.Event | None = None

    async def notify(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if request.content_type != "application/json":
            return web.Response(status=415)
        self.accepted.append(await request.json())
        if self.hold is not None:
            await self.hold.wait()
        statuses = self.fail_paths.get(request.path)
        if statuses:
            return web.Response(status=statuses.pop(0))
        return web.Response(text="ok")

    def apprise_url(self, path: str = "/notify") -> str:
        return "json://" + self.url.removeprefix("http://") + path


async def serve_apprise(aiohttp_server: Any) -> JsonSink:
    """A sink for Apprise's json:// URLs on a loopback port; the dispatch tests start one too."""
    receiver = JsonSink()
    return await serve(aiohttp_server, receiver, [web.post("/{path}", receiver.notify)])


@pytest.fixture
async def sink(aiohttp_server: Any) -> JsonSink:
    return await serve_apprise(aiohttp_server)


async def test_apprise_delivers_down_and_up_through_its_urls(build: Any, sink: JsonSink) -> None:
    notifier = build(AppriseNotifier, urls=sink.apprise_url())
    await notifier.send(make_event("down"))
    await notifier.send(make_event("up"))
    down, up = sink.accepted
    assert down["type"] == "failure" and down["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error: connection refused" in down["message"]
    assert f"http://hb.test/checks/{unique_key(UUID)}" in down["message"]
    assert up["type"] == "success" and up["title"] == "backup is UP again after 1h down"


async def test_apprise_retries_only_the_urls_that_failed(build: Any, sink: JsonSink) -> None:
    sink.fail_paths = {"/b": [500]}
    notifier = build(AppriseNotifier, urls=[sink.apprise_url("/a"), sink.apprise_url("/b")])
    event = make_event()
    with pytest.raises(NotifyError) as failure:
        await notifier.send(event)
    assert str(failure.value) == "apprise could not deliver to 1 of 2 URLs"
    assert not failure.value.permanent
    await notifier.send(event)
    assert sorted(sink.paths) == ["/a", "/b", "/b"]  # /a is not sent the same alert twice


async def test_apprise_urls_can_come_from_a_secrets_file_one_a_line(
    make_config: Any, tmp_path: Path, sink: JsonSink
) -> None:
    (tmp_path / "apprise.urls").write_text(
        f"{sink.apprise_url('/a')}\n\n{sink.apprise_url('/b')}\n"
    )
    config = make_config('[[notifier]]\nname = "a"\ntype = "apprise"\nurls_file = "apprise.urls"\n')
    notifier = build_notifiers(config)["a"]
    try:
        sink.fail_paths = {"/b": [500]}
        with pytest.raises(NotifyError, match="could not deliver to 1 of 2 URLs"):
            await notifier.send(make_event())
    finally:
        await notifier.close()
    assert sorted(sink.paths) == ["/a", "/b"]


async def test_a_slow_apprise_service_does_not_block_the_loop(build: Any, sink: JsonSink) -> None:
    sink.hold = asyncio.Event()
    notifier = build(AppriseNotifier, urls=sink.apprise_url())
    sending = asyncio.create_task(notifier.send(make_event()))
    # The sink runs in this event loop: it can only take the request while Apprise is sending
    # if Apprise's blocking I/O is not running in the loop.
    await eventually(lambda: sink.accepted)
    assert not sending.done()
    sink.hold.set()
    await sending


def test_an_unknown_apprise_scheme_stops_start_up_without_showing_the_url() -> None:
    with pytest.raises(OptionError) as failure:
        AppriseNotifier("chat", {"urls": ["json://127.0.0.1/x", "nosuch://user:hunter2@host"]})
    assert failure.value.key == "urls"
    assert "nosuch://" in failure.value.message and "number 2" in failure.value.message
    assert "hunter2" not in failure.value.message


def test_a_broken_apprise_url_is_refused_without_showing_it() -> None:
    with pytest.raises(OptionError) as failure:
        AppriseNotifier("chat", {"urls": "tgram://hunter2"})  # a token without a chat
    assert failure.value.key == "urls"
    assert "tgram://" in failure.value.message and "hunter2" not in failure.value.message
    with pytest.raises(OptionError) as failure:
        AppriseNotifier("chat", {"urls": "hunter2"})
    assert "hunter2" not in failure.value.message


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"urls": []}, "urls"),
        ({"timeout": "forever"}, "timeout"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(AppriseNotifier, {**VALID, **options}, key)
