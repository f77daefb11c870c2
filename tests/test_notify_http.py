"""What every HTTP notifier shares (heartbeatd/notify/http.py), against loopback services: one
that never answers, one that asks us to wait, and one that echoes our secrets back."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from heartbeatd.notify import NotifyError
from heartbeatd.notify.discord import DiscordNotifier
from heartbeatd.notify.gotify import GotifyNotifier
from heartbeatd.notify.matrix import MatrixNotifier
from heartbeatd.notify.ntfy import NtfyNotifier
from heartbeatd.notify.pushover import PushoverNotifier
from heartbeatd.notify.slack import SlackNotifier
from heartbeatd.notify.telegram import TelegramNotifier
from heartbeatd.notify.webhook import WebhookNotifier
from tests.conftest import Daemon, eventually
from tests.notify_helpers import Service, make_event, serve, webhook_config
from tests.test_notify_discord import DISCORD_ID
from tests.test_notify_gotify import GOTIFY_TOKEN
from tests.test_notify_ntfy import NTFY_TOPIC
from tests.test_notify_slack import SLACK_PATH


class Scripted(Service):
    """A loopback service: answers each request with the next scripted response (200 after)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[web.Response] = []
        self.hold = asyncio.Event()  # `silent` requests wait on it

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.accepted.append(await request.read())
        if request.path == "/silent":
            await self.hold.wait()
        return self.answers.pop(0) if self.answers else web.Response(text="ok")

    @property
    def host(self) -> str:
        return self.url.split("/")[2]


@pytest.fixture
async def service(aiohttp_server: Any) -> AsyncIterator[Scripted]:
    scripted = Scripted()
    yield await serve(aiohttp_server, scripted, [web.route("*", "/{path:.*}", scripted.handle)])
    scripted.hold.set()


async def go_down(daemon: Daemon) -> None:
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)


async def outbox_row(daemon: Daemon) -> tuple[Any, ...]:
    rows = await daemon.query(
        "SELECT state, attempts, last_error, next_attempt, created FROM outbox"
    )
    return rows[0]


# --- A service that never answers -----------------------------------------------------------


async def test_a_service_that_never_answers_fails_naming_its_host(
    build: Any, service: Scripted
) -> None:
    notifier = build(WebhookNotifier, url=f"{service.url}/silent", timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert loop.time() - started < 1
    assert str(failure.value) == f"no answer from {service.host} within 0.2s"
    assert not failure.value.permanent
    assert notifier.timeout > 0.2  # the dispatcher leaves the request time to fail by itself


async def test_a_target_that_is_down_leaves_nothing_for_the_cycle_collector(build: Any) -> None:
    """A dead target is retried all day. Each refused connection used to leave ~80 objects
    in reference cycles (aiohttp's frames, holding the request body) that only the cyclic
    collector frees; between its rounds they piled up and fragmented the heap (a soak's RSS
    grew 5 MB in 7 minutes with a dead target, 0.9 MB without)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notifier = build(WebhookNotifier, url=f"http://127.0.0.1:{port}/hook")

    async def refused() -> str:
        try:
            await notifier.send(make_event())
        except NotifyError as e:
            return str(e)
        return "sent"

    assert (await refused()).startswith("cannot connect to 127.0.0.1")  # the session exists
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        outcomes = {await refused() for _ in range(5)}
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert len(outcomes) == 1 and "sent" not in outcomes
    assert left == []


async def test_the_outbox_records_which_host_did_not_answer(
    start_daemon: Any, service: Scripted
) -> None:
    daemon = await start_daemon(webhook_config(f"{service.url}/silent", timeout="0.3s"))
    await go_down(daemon)
    await eventually(lambda: _attempted(daemon))
    state, attempts, error, *_ = await outbox_row(daemon)
    assert (state, attempts) == ("pending", 1)  # retried later
    assert error == f"no answer from {service.host} within 0.3s"


async def _attempted(daemon: Daemon) -> bool:
    return bool((await outbox_row(daemon))[1])


# --- A service that asks us to wait ---------------------------------------------------------


async def test_a_429_with_retry_after_is_not_retried_sooner(
    start_daemon: Any, service: Scripted
) -> None:
    service.answers = [web.Response(status=429, text="slow down", headers={"Retry-After": "30"})]
    daemon = await start_daemon(webhook_config(f"{service.url}/hook"))
    await go_down(daemon)
    await eventually(lambda: _attempted(daemon))
    state, _, error, next_attempt, _ = await outbox_row(daemon)
    assert state == "pending" and error.endswith("slow down (retry after 30s)")
    assert next_attempt - daemon.clock.now() >= 30  # not the 5 s backoff of a first failure
    await daemon.advance(31)
    await eventually(lambda: _sent(daemon))
    assert len(service.accepted) == 2


async def _sent(daemon: Daemon) -> bool:
    return (await outbox_row(daemon))[0] == "sent"


async def test_retry_after_beyond_retry_for_leaves_one_last_try_at_the_deadline(
    start_daemon: Any, service: Scripted
) -> None:
    service.answers = [web.Response(status=503, headers={"Retry-After": "86400"})]
    daemon = await start_daemon(webhook_config(f"{service.url}/hook", 'retry_for = "1m"'))
    await go_down(daemon)
    await eventually(lambda: _attempted(daemon))
    state, _, _, next_attempt, created = await outbox_row(daemon)
    assert state == "pending" and next_attempt == created + 60
    await daemon.advance(61)
    await eventually(lambda: _sent(daemon))


async def test_retry_after_as_a_date_is_measured_by_the_services_clock(
    build: Any, service: Scripted
) -> None:
    # The service's clock is 25 years behind ours: only its own Date makes sense of the date.
    headers = {
        "Date": "Mon, 01 Jan 2001 00:00:00 GMT",
        "Retry-After": "Mon, 01 Jan 2001 00:02:00 GMT",
    }
    service.answers = [web.Response(status=503, headers=headers)]
    notifier = build(WebhookNotifier, url=f"{service.url}/hook")
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.retry_after == 120
    assert str(failure.value) == f"HTTP 503 from {service.host} (retry after 2m)"


@pytest.mark.parametrize(
    ("status", "header"), [(503, "soon"), (500, "30"), (429, "")], ids=["garbled", "500", "none"]
)
async def test_no_usable_retry_after_leaves_the_backoff_alone(
    build: Any, service: Scripted, status: int, header: str
) -> None:
    headers = {"Retry-After": header} if header else {}
    service.answers = [web.Response(status=status, headers=headers)]
    notifier = build(WebhookNotifier, url=f"{service.url}/hook")
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.retry_after is None and not failure.value.permanent


# --- A service that echoes our secrets ------------------------------------------------------


class Echo(Service):
    """A service that refuses every request, quoting all it was sent (path, credentials,
    body) after `pad` characters, in every field the notifiers read or as plain text."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = 0
        self.as_json = True

    async def handle(self, request: web.Request) -> web.Response:
        credentials = [request.headers.get(header, "") for header in CREDENTIALS]
        sent = " ".join([request.path_qs, *credentials, await request.text()])
        echo = "." * self.pad + sent
        if not self.as_json:
            return web.Response(status=400, text=echo)
        fields = ("description", "error", "errorDescription", "message")
        body = {**dict.fromkeys(fields, echo), "errors": [echo], "errcode": "M_UNKNOWN"}
        return web.json_response(body, status=400)


CREDENTIALS = ("Authorization", "X-Gotify-Key")


@pytest.fixture
async def echo(aiohttp_server: Any) -> Echo:
    service = Echo()
    return await serve(aiohttp_server, service, [web.route("*", "/{path:.*}", service.handle)])


BOT_TOKEN = "555000111:AAH-echoed_bot_token"
PUSHOVER = {"token": "azGDORePK8gEchoedTokenYAMyEEuz", "user": "uQiRzpo4DXgEchoedUser7cmVRsG"}
DISCORD_TOKEN = "echoedDiscordWebhookToken_1a2b3c"


def secret_options(url: str) -> dict[str, tuple[type, dict[str, object], dict[str, str]]]:
    """Each notifier with its secrets, and the names its errors show instead of them."""
    return {
        "telegram": (
            TelegramNotifier,
            {"api_url": url, "bot_token": BOT_TOKEN, "chat_id": -1001234567890},
            {"bot_token": BOT_TOKEN},
        ),
        "pushover": (PushoverNotifier, {"api_url": url, **PUSHOVER}, PUSHOVER),
        "matrix": (
            MatrixNotifier,
            {"homeserver": url, "access_token": "syt_echoed_matrix_token", "room_id": "!a:b.org"},
            {"access_token": "syt_echoed_matrix_token"},
        ),
        "gotify": (
            GotifyNotifier,
            {"server": url, "token": "AGIVi2Ah3Echoed"},
            {"token": "AGIVi2Ah3Echoed"},
        ),
        "ntfy-token": (
            NtfyNotifier,
            {"server": url, "topic": "backups", "token": "tk_echoedNtfyToken123"},
            {"token": "tk_echoedNtfyToken123"},
        ),
        "ntfy-password": (
            NtfyNotifier,
            {"server": url, "topic": "backups", "username": "ops", "password": "hunter2-echoed"},
            {"password": "hunter2-echoed", "credentials": "b3BzOmh1bnRlcjItZWNob2Vk"},
        ),
        "discord": (
            DiscordNotifier,
            {"url": f"{url}/api/webhooks/1234567890/{DISCORD_TOKEN}"},
            {"webhook_token": DISCORD_TOKEN},
        ),
    }


@pytest.mark.parametrize("case", list(secret_options("")))
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
async def test_secrets_a_service_echoes_never_reach_the_error(
    build: Any, echo: Echo, case: str, as_json: bool
) -> None:
    kind, options, secrets = secret_options(echo.url)[case]
    notifier = build(kind, **options)
    echo.as_json = as_json
    for pad in range(0, 200, 3):  # a secret at the quote's cut too, where only a part shows
        echo.pad = pad
        with pytest.raises(NotifyError) as failure:
            await notifier.send(make_event())
        for secret in secrets.values():
            assert secret[:8] not in str(failure.value)
        if pad == 0:
            shown = [f"<{name}>" for name in secrets if f"<{name}>" in str(failure.value)]
            assert shown, str(failure.value)  # echoed, and shown by name


class Silent(Service):
    """A service that takes the request and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.accepted.append(request.path)
        await self.hold.wait()
        return web.Response(text="too late")


@pytest.fixture
async def silent(aiohttp_server: Any) -> AsyncIterator[Silent]:
    service = Silent()
    await serve(aiohttp_server, service, [web.post("/{path:.*}", service.handle)])
    yield service
    service.hold.set()


def silent_options(kind: type, url: str) -> dict[str, object]:
    return {
        NtfyNotifier: {"server": url, "topic": NTFY_TOPIC},
        GotifyNotifier: {"server": url, "token": GOTIFY_TOKEN},
        DiscordNotifier: {"url": f"{url}/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}"},
        SlackNotifier: {"url": url + SLACK_PATH},
    }[kind]


@pytest.mark.parametrize("kind", [NtfyNotifier, GotifyNotifier, DiscordNotifier, SlackNotifier])
async def test_a_service_that_never_answers_times_out_and_is_retried(
    build: Any, silent: Silent, kind: type
) -> None:
    notifier = build(kind, **silent_options(kind, silent.url), timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The dispatcher retries both: a TimeoutError and a NotifyError that is not permanent.
    with pytest.raises((NotifyError, TimeoutError)) as failure:
        await notifier.send(make_event())
    assert loop.time() - started < 2
    assert not getattr(failure.value, "permanent", False)
    assert silent.accepted  # the request did arrive
