"""What the tests of notifiers share: a sample event, stand-in services, the option check."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from heartbeatd.core.model import Flip, unique_key
from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.options import OptionError
from tests.test_model import make_check

T0 = 1_800_000_000.0
UUID = "5f0c6a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"
OUTPUT = b"dumping db...\npg_dump: error: connection refused\n"
CHECK_URL = f"http://hb.test/checks/{unique_key(UUID)}"
# Markup that would ping a whole channel, or link away, if a chat service took it as markup.
HOSTILE_NAME = "**@everyone** <!channel> <@&123> [x](http://evil) & `code`"


def make_event(kind: str = "down", body: bytes = OUTPUT, outbox_id: int = 0, **check: Any) -> Event:
    check.setdefault("uuid", UUID)
    if kind == "up":
        flip = Flip(at=T0 + 3600, old="down", new="up", reason="success")
        down_since: float | None = T0
    else:
        flip = Flip(at=T0, old="up", new="down", reason="timeout", detail="missed ping")
        down_since = None
    return Event(
        kind=kind,
        check=make_check(status=flip.new, last_ping=T0 - 70, **check),
        flip=flip,
        site_url="http://hb.test",
        flip_id=7,
        outbox_id=outbox_id or {"down": 11, "up": 12}.get(kind, 0),
        down_since=down_since,
        last_body=body,
        now=flip.at + 60,
    )


class Service:
    """A stand-in service: records what it accepted; `fail` scripts the next answers."""

    def __init__(self) -> None:
        self.url = ""
        self.accepted: list[Any] = []
        self.fail: list[int] = []

    def scripted(self) -> web.Response | None:
        if not self.fail:
            return None
        status = self.fail.pop(0)
        if status == 429:
            return self.too_many()
        return web.Response(status=status, text="upstream unavailable")

    def too_many(self) -> web.Response:
        return web.Response(status=429, text="slow down")


def webhook_config(url: str, extra: str = "", timeout: str = "5s") -> str:
    """A config with one webhook notifier, `hook`, that every check uses."""
    return f"""
[[notifier]]
name = "hook"
type = "webhook"
url = "{url}"
timeout = "{timeout}"
default = true
headers = {{ Authorization = "Bearer s3cret" }}
{extra}
"""


async def serve(aiohttp_server: Any, service: Service, routes: list[web.RouteDef]) -> Any:
    app = web.Application()
    app.add_routes(routes)
    server = await aiohttp_server(app)
    service.url = str(server.make_url("")).rstrip("/")
    return service


async def refused_once_then_delivered(notifier: Any, service: Service, status: int) -> NotifyError:
    """`service` answers `status` once: the notifier must raise an error the dispatcher retries,
    then deliver on the next try. Returns the error, for what a test checks of its text."""
    service.fail = [status]
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert not failure.value.permanent
    await notifier.send(make_event())
    assert len(service.accepted) == 1
    error = failure.value  # copied: its traceback holds the refused connection open
    return NotifyError(str(error), error.permanent, error.retry_after)


def assert_option_refused(kind: type, options: dict[str, object], key: str) -> None:
    """Building `kind` from `options` stops start-up naming `key`, and shows no secret."""
    with pytest.raises(OptionError) as failure:
        kind("notifier", options)
    assert failure.value.key == key
    assert "secret" not in failure.value.message


class JsonSink:
    """A webhook receiver that records each request's JSON, as the service would see it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response()


async def json_sink(aiohttp_server: Any) -> tuple[JsonSink, str]:
    """A JsonSink on a loopback port, and the URL to post to."""
    recorder = JsonSink()
    app = web.Application()
    app.router.add_post("/hook", recorder.handle)
    server = await aiohttp_server(app)
    return recorder, str(server.make_url("/hook"))
