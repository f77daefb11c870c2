"""ntfy, Gotify, Discord and Slack, each against a loopback stand-in for its service.

The stand-ins check requests the way the real services do (method, path, credentials, content
type, required fields, limits) and answer with the services' own success and error shapes, so
a test passes only when the real service would have accepted the message, and a check's name
that would ping a whole channel there fails here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.discord import DiscordNotifier, description
from heartbeatd.notify.gotify import GotifyNotifier
from heartbeatd.notify.ntfy import NtfyNotifier
from heartbeatd.notify.ntfy import message as ntfy_message
from heartbeatd.notify.options import OptionError
from heartbeatd.notify.slack import SlackNotifier, payload
from tests.conftest import Daemon, eventually
from tests.notify_helpers import (
    OUTPUT,
    UUID,
    Service,
    make_event,
    notifiers,
    refused_once_then_delivered,
    serve,
)

NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
NTFY_TOPIC = "backups_7f3a"
GOTIFY_TOKEN = "AGIVi2Ah3Oks.Xo"
DISCORD_ID = "1234567890123456789"
DISCORD_TOKEN = "a1B2c3-D4e5_F6g7H8i9J0kLmNoPqRsTuVwXyZ"
SLACK_PATH = "/services/T0001/B0002/XXXXsecretXXXX"
HOSTILE_NAME = "**@everyone** <!channel> <@&123> [x](http://evil) & `code`"
CHECK_URL = f"http://hb.test/checks/{unique_key(UUID)}"


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., Any]]:
    """Make notifiers and close them after the test."""
    async with notifiers() as make:
        yield make


# --- ntfy -----------------------------------------------------------------------------------

NTFY_FIELDS = {"topic", "message", "title", "priority", "tags", "click", "actions", "markdown"}


class NtfyServer(Service):
    """Like ntfy with access control: the topic needs the token or the user's password."""

    user = ("alerts", "hunter2-correct-horse")

    async def publish(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth and auth not in (f"Bearer {NTFY_TOKEN}", _basic(*self.user)):
            return self.error(401, 40101, "unauthorized")
        if not auth:
            return self.error(403, 40301, "forbidden")
        if (answer := self.scripted()) is not None:
            return answer
        try:
            message = json.loads(await request.read())
        except ValueError:
            return self.error(400, 40024, "invalid request: request body must be message JSON")
        if not isinstance(message, dict) or set(message) - NTFY_FIELDS:
            return self.error(400, 40024, "invalid request: request body must be message JSON")
        if not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", str(message.get("topic", ""))):
            return self.error(400, 40009, "invalid request: topic invalid")
        if message.get("priority") not in (1, 2, 3, 4, 5):
            return self.error(400, 40007, "invalid priority")
        if len(message.get("message", "").encode()) > 4096:
            return self.error(413, 41301, "message too large")  # or an attachment, at best
        self.accepted.append({**message, "auth": auth})
        return web.json_response({"id": f"m{len(self.accepted)}", "event": "message", **message})

    def error(self, status: int, code: int, error: str) -> web.Response:
        body = {"code": code, "http": status, "error": error, "link": "https://ntfy.sh/docs"}
        return web.json_response(body, status=status)

    def too_many(self) -> web.Response:
        return self.error(429, 42901, "limit reached: too many requests")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def ntfy(aiohttp_server: Any) -> NtfyServer:
    server = NtfyServer()
    return await serve(aiohttp_server, server, [web.post("/", server.publish)])


def ntfy_options(server: NtfyServer, **options: object) -> dict[str, object]:
    return {"server": server.url, "topic": NTFY_TOPIC, "token": NTFY_TOKEN, **options}


async def test_ntfy_publishes_down_urgently_and_up_quietly(build: Any, ntfy: NtfyServer) -> None:
    notifier = build(NtfyNotifier, **ntfy_options(ntfy))
    await notifier.send(make_event("down", desc="nightly pg_dump"))
    await notifier.send(make_event("up"))
    down, up = ntfy.accepted
    assert down["auth"] == f"Bearer {NTFY_TOKEN}" and down["topic"] == NTFY_TOPIC
    assert down["title"] == "backup is DOWN (missed ping)"
    assert (down["priority"], down["tags"], down["click"]) == (4, ["rotating_light"], CHECK_URL)
    assert "nightly pg_dump" in down["message"]
    assert down["message"].endswith(
        "Last output:\ndumping db...\npg_dump: error: connection refused"
    )
    assert up["title"] == "backup is UP again after 1h down"
    assert (up["priority"], up["tags"]) == (3, ["white_check_mark"])


async def test_ntfy_logs_in_with_a_username_and_password(build: Any, ntfy: NtfyServer) -> None:
    user, password = ntfy.user
    options = ntfy_options(ntfy, username=user, password=password, priority_down="urgent")
    del options["token"]
    await build(NtfyNotifier, **options).send(make_event())
    assert ntfy.accepted[0]["auth"] == _basic(user, password)
    assert ntfy.accepted[0]["priority"] == 5


async def test_ntfy_carries_any_check_name_and_output(build: Any, ntfy: NtfyServer) -> None:
    body = "".join(f"Schritt {i:04d} fertig ✓\n" for i in range(3000)).encode()
    notifier = build(NtfyNotifier, **ntfy_options(ntfy))
    await notifier.send(make_event(name="Sicherung «Datenbank» 🔥", body=body))
    message = ntfy.accepted[0]
    assert message["title"] == "Sicherung «Datenbank» 🔥 is DOWN (missed ping)"
    assert len(message["message"].encode()) <= 4096
    assert message["message"].endswith("Schritt 2999 fertig ✓")  # the newest output is kept


@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=300), desc=st.text(max_size=5000), body=st.text(max_size=9000))
def test_ntfy_messages_fit_for_any_check_data(name: str, desc: str, body: str) -> None:
    event = make_event(name=name, desc=desc, body=body.encode())
    text = ntfy_message(event)
    assert len(text.encode()) <= 4096
    tail = body.encode()[-1500:].decode("utf-8", "replace").strip()
    if tail:
        assert text.endswith(tail[-100:])  # the newest output survives any cut


async def test_ntfy_refused_credentials_fail_for_good_without_showing_them(
    build: Any, ntfy: NtfyServer
) -> None:
    wrong = "tk_wrongSecretToken000000000000"
    notifier = build(NtfyNotifier, **ntfy_options(ntfy, token=wrong))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent and str(failure.value).endswith(": unauthorized")
    assert wrong not in str(failure.value)
    options = ntfy_options(ntfy)
    del options["token"]  # a protected topic without credentials
    with pytest.raises(NotifyError, match="forbidden") as failure:
        await build(NtfyNotifier, **options).send(make_event())
    assert failure.value.permanent and ntfy.accepted == []


@pytest.mark.parametrize("status", [429, 500])
async def test_ntfy_limits_and_server_errors_are_retried(
    build: Any, ntfy: NtfyServer, status: int
) -> None:
    notifier = build(NtfyNotifier, **ntfy_options(ntfy))
    error = await refused_once_then_delivered(notifier, ntfy, status)
    if status == 429:
        assert str(error).endswith("limit reached: too many requests")


# --- Gotify ---------------------------------------------------------------------------------


class GotifyServer(Service):
    """Like gotify/server's POST /message, mounted under a path as behind a reverse proxy."""

    async def message(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Gotify-Key") != GOTIFY_TOKEN:
            description = "you need to provide a valid access token or user credentials"
            return self.error(401, "Unauthorized", f"{description} to access this api")
        if (answer := self.scripted()) is not None:
            return answer
        if request.content_type != "application/json":
            return self.error(400, "Bad Request", "Field 'message' is required")
        message = await request.json()
        if not isinstance(message.get("message"), str) or not message["message"]:
            return self.error(400, "Bad Request", "Field 'message' is required")
        if not isinstance(message.get("priority", 0), int):
            return self.error(400, "Bad Request", "Field 'priority' must be a number")
        extras = message.get("extras", {})
        if not all(len(key.split("::")) == 2 for key in extras):
            return self.error(400, "Bad Request", "extras keys must be namespaced like a::b")
        self.accepted.append(message)
        return web.json_response({"id": len(self.accepted), "appid": 3, **message})

    def error(self, status: int, error: str, description: str) -> web.Response:
        body = {"error": error, "errorCode": status, "errorDescription": description}
        return web.json_response(body, status=status)


@pytest.fixture
async def gotify(aiohttp_server: Any) -> GotifyServer:
    server = GotifyServer()
    await serve(aiohttp_server, server, [web.post("/gotify/message", server.message)])
    server.url += "/gotify"
    return server


def gotify_options(server: GotifyServer, **options: object) -> dict[str, object]:
    return {"server": server.url, "token": GOTIFY_TOKEN, **options}


async def test_gotify_posts_plain_text_messages_that_open_the_check(
    build: Any, gotify: GotifyServer
) -> None:
    notifier = build(GotifyNotifier, **gotify_options(gotify, priority_up=2))
    await notifier.send(make_event("down", name="db **primary**"))
    await notifier.send(make_event("up", name="db **primary**"))
    down, up = gotify.accepted
    assert down["title"] == "db **primary** is DOWN (missed ping)"
    assert "pg_dump: error: connection refused" in down["message"]
    assert down["priority"] == 8 and up["priority"] == 2
    assert down["extras"] == {
        "client::display": {"contentType": "text/plain"},
        "client::notification": {"click": {"url": CHECK_URL}},
    }
    assert up["title"] == "db **primary** is UP again after 1h down"


async def test_gotify_bad_token_fails_for_good_without_showing_it(
    build: Any, gotify: GotifyServer
) -> None:
    wrong = "AWrongSecretTok"
    notifier = build(GotifyNotifier, **gotify_options(gotify, token=wrong))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent
    assert "Unauthorized: you need to provide a valid access token" in str(failure.value)
    assert wrong not in str(failure.value)


async def test_gotify_server_errors_are_retried(build: Any, gotify: GotifyServer) -> None:
    notifier = build(GotifyNotifier, **gotify_options(gotify))
    await refused_once_then_delivered(notifier, gotify, 502)


# --- Discord --------------------------------------------------------------------------------

ESCAPED = re.compile(r"\\([^\w\s])")
DISCORD_MARKUP = re.compile(r"\*\*|__|~~|`|\|\||\[[^\]]*\]\(|<@|<#|@everyone|@here|^#|^>", re.M)


def discord_seen(markdown: str) -> str:
    """What a reader sees of Discord Markdown made only of text and escapes."""
    return ESCAPED.sub(r"\1", markdown)


def discord_markup(markdown: str) -> list[str]:
    """Markup Discord would act on: formatting, links, headings, mentions."""
    return DISCORD_MARKUP.findall(ESCAPED.sub("", markdown))


class DiscordWebhook(Service):
    async def execute(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != DISCORD_ID:
            return self.error(404, 10015, "Unknown Webhook")
        if request.match_info["token"] != DISCORD_TOKEN:
            return self.error(401, 50027, "Invalid Webhook Token")
        if (answer := self.scripted()) is not None:
            return answer
        if request.content_type != "application/json":
            return self.error(400, 50006, "Cannot send an empty message")
        message = await request.json()
        embeds = message.get("embeds") or []
        if not message.get("content") and not embeds:
            return self.error(400, 50006, "Cannot send an empty message")
        for embed in embeds:
            sizes = {"title": 256, "description": 4096}
            if any(len(embed.get(key, "")) > limit for key, limit in sizes.items()):
                return self.error(400, 50035, "Invalid Form Body")
            if not isinstance(embed.get("color", 0), int):
                return self.error(400, 50035, "Invalid Form Body")
        self.accepted.append(message)
        if request.query.get("wait") != "true":
            return web.Response(status=204)
        return web.json_response({"id": "11", "channel_id": "22", **message})

    def error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response({"message": message, "code": code}, status=status)

    def too_many(self) -> web.Response:
        body = {"message": "You are being rate limited.", "retry_after": 0.8, "global": False}
        return web.json_response(body, status=429, headers={"Retry-After": "1"})


@pytest.fixture
async def discord(aiohttp_server: Any) -> DiscordWebhook:
    webhook = DiscordWebhook()
    route = web.post("/api/webhooks/{id}/{token}", webhook.execute)
    return await serve(aiohttp_server, webhook, [route])


def discord_options(webhook: DiscordWebhook, **options: object) -> dict[str, object]:
    return {"url": f"{webhook.url}/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}", **options}


async def test_discord_posts_a_red_embed_for_down_and_a_green_one_for_up(
    build: Any, discord: DiscordWebhook
) -> None:
    notifier = build(DiscordNotifier, **discord_options(discord, username="heartbeatd"))
    await notifier.send(make_event("down", desc="nightly pg_dump"))
    await notifier.send(make_event("up"))
    down, up = discord.accepted
    assert down["username"] == "heartbeatd" and down["allowed_mentions"] == {"parse": []}
    (embed,) = down["embeds"]
    assert discord_seen(embed["title"]) == "backup is DOWN (missed ping)"
    assert embed["url"] == CHECK_URL and embed["color"] == 0xE74C3C
    assert embed["timestamp"] == "2027-01-15T08:00:00+00:00"
    assert "nightly pg\\_dump" in embed["description"]
    assert embed["description"].endswith(
        "```\ndumping db...\npg_dump: error: connection refused\n```"
    )
    assert discord_seen(up["embeds"][0]["title"]) == "backup is UP again after 1h down"
    assert up["embeds"][0]["color"] == 0x2ECC71


async def test_discord_shows_hostile_check_data_as_written_and_pings_nobody(
    build: Any, discord: DiscordWebhook
) -> None:
    body = b"```\n@everyone **boom**\n```"
    notifier = build(DiscordNotifier, **discord_options(discord))
    await notifier.send(make_event(name=HOSTILE_NAME, desc="# heading\n> quote", body=body))
    message = discord.accepted[0]
    assert message["allowed_mentions"] == {"parse": []} and "content" not in message
    embed = message["embeds"][0]
    assert discord_seen(embed["title"]) == f"{HOSTILE_NAME} is DOWN (missed ping)"
    assert discord_markup(embed["title"]) == []
    details, _, output = embed["description"].partition("\n\n**Last output:**\n")
    assert discord_markup(details) == [] and "# heading" in discord_seen(details)
    assert output.count("```") == 2  # the job's output cannot close the code block


@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=300), desc=st.text(max_size=5000), body=st.text(max_size=9000))
def test_discord_descriptions_fit_and_stay_text(name: str, desc: str, body: str) -> None:
    event = make_event(name=name, desc=desc, body=body.encode())
    text = description(event)
    assert len(text) <= 4096
    details, _, output = text.partition("\n\n**Last output:**\n```\n")
    assert discord_markup(details) == []
    if output:
        assert output.endswith("\n```") and "```" not in output[:-4]


@pytest.mark.parametrize(
    ("change", "status", "said"),
    [({"id": "999"}, 404, "Unknown Webhook"), ({"token": "x"}, 401, "Invalid Webhook Token")],
)
async def test_discord_deleted_webhook_fails_for_good_without_showing_the_url(
    build: Any, discord: DiscordWebhook, change: dict[str, str], status: int, said: str
) -> None:
    ids = {"id": DISCORD_ID, "token": "wrongSecretWebhookToken", **change}
    notifier = build(DiscordNotifier, url=f"{discord.url}/api/webhooks/{ids['id']}/{ids['token']}")
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent and str(failure.value).endswith(f"HTTP {status} from " + (
        discord.url.removeprefix("http://")) + f": {said}")  # fmt: skip
    assert "wrongSecret" not in str(failure.value)


async def test_discord_rate_limit_is_retried_and_says_when(
    build: Any, discord: DiscordWebhook
) -> None:
    discord.fail = [429, 503]
    notifier = build(DiscordNotifier, **discord_options(discord))
    for _ in range(2):
        with pytest.raises(NotifyError) as failure:
            await notifier.send(make_event())
        assert not failure.value.permanent
        if discord.fail:
            assert "You are being rate limited. (retry after 0.8s)" in str(failure.value)
            assert failure.value.retry_after == 0.8  # Discord's own figure, finer than the header
    await notifier.send(make_event())
    assert len(discord.accepted) == 1


# --- Slack ----------------------------------------------------------------------------------

SLACK_TOKEN = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def slack_seen(mrkdwn: str) -> tuple[str, list[str], list[str]]:
    """Read mrkdwn like Slack: the text shown, the special mentions (<!channel>, <@U1>) that
    would notify people, and the links. A raw & < or > outside markup is a bug."""
    pings: list[str] = []
    links: list[str] = []

    def token(match: re.Match[str]) -> str:
        target, label = match[1], match[2]
        if target[:1] in "!@#":
            pings.append(target)
            return "@" + target[1:]
        links.append(target.replace("&amp;", "&"))
        return label or target

    shown = SLACK_TOKEN.sub(token, mrkdwn)
    assert "<" not in shown and ">" not in shown, f"unescaped markup in {mrkdwn!r}"
    assert not re.search(r"&(?!amp;|lt;|gt;)", shown), f"unescaped & in {mrkdwn!r}"
    return shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"), pings, links


class SlackWebhook(Service):
    """Like hooks.slack.com: answers "ok", or a plain-text error code."""

    def __init__(self) -> None:
        super().__init__()
        self.status = (200, "ok")

    async def post(self, request: web.Request) -> web.Response:
        if request.path != SLACK_PATH:
            return web.Response(status=403, text="invalid_token")
        if self.status != (200, "ok"):
            return web.Response(status=self.status[0], text=self.status[1])
        if (answer := self.scripted()) is not None:
            return answer
        if request.content_type != "application/json":
            return web.Response(status=400, text="invalid_payload")
        message = await request.json()
        if not message.get("text") and not message.get("blocks"):
            return web.Response(status=400, text="no_text")
        blocks = message.get("blocks", [])
        for block in blocks:
            kind, text = block["type"], block["text"]
            limit = {"header": 150, "section": 3000}[kind]
            if len(text["text"]) > limit or not text["text"]:
                return web.Response(status=400, text="invalid_blocks")
            if kind == "header" and text["type"] != "plain_text":
                return web.Response(status=400, text="invalid_blocks")
        if len(blocks) > 50:
            return web.Response(status=400, text="invalid_blocks")
        self.accepted.append(message)
        return web.Response(text="ok")


@pytest.fixture
async def slack(aiohttp_server: Any) -> SlackWebhook:
    webhook = SlackWebhook()
    return await serve(aiohttp_server, webhook, [web.post("/services/{path:.*}", webhook.post)])


def slack_options(webhook: SlackWebhook, **options: object) -> dict[str, object]:
    return {"url": webhook.url + SLACK_PATH, **options}


async def test_slack_posts_blocks_a_person_can_act_on(build: Any, slack: SlackWebhook) -> None:
    notifier = build(SlackNotifier, **slack_options(slack))
    await notifier.send(make_event("down", desc="nightly pg_dump"))
    await notifier.send(make_event("up"))
    down, up = slack.accepted
    assert down["text"] == ":red_circle: backup is DOWN (missed ping)"
    header, details, output, link = down["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "backup is DOWN (missed ping)"}
    assert "nightly pg_dump" in slack_seen(details["text"]["text"])[0]
    assert slack_seen(output["text"]["text"])[0].endswith("pg_dump: error: connection refused```")
    assert slack_seen(link["text"]["text"])[2] == [CHECK_URL]
    assert up["text"] == ":large_green_circle: backup is UP again after 1h down"


async def test_slack_shows_hostile_check_data_as_written_and_pings_nobody(
    build: Any, slack: SlackWebhook
) -> None:
    notifier = build(SlackNotifier, **slack_options(slack))
    body = b"<!here> <https://evil.example|click me> & ```done"
    await notifier.send(make_event(name=HOSTILE_NAME, desc="<@U024BE7LH> a > b", body=body))
    message = slack.accepted[0]
    shown, pings, _ = slack_seen(message["text"])
    assert shown.endswith(f"{HOSTILE_NAME} is DOWN (missed ping)") and pings == []
    for block in message["blocks"][1:]:
        shown, pings, links = slack_seen(block["text"]["text"])
        assert pings == [] and links in ([], [CHECK_URL])
    details, output = (block["text"]["text"] for block in message["blocks"][1:3])
    assert "<@U024BE7LH> a > b" in slack_seen(details)[0]
    assert "<!here> <https://evil.example|click me> &" in slack_seen(output)[0]
    assert output.count("```") == 2


@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=300), desc=st.text(max_size=5000), body=st.text(max_size=9000))
def test_slack_blocks_fit_and_stay_text(name: str, desc: str, body: str) -> None:
    message = payload(make_event(name=name, desc=desc, body=body.encode()))
    assert slack_seen(message["text"])[1] == []
    header, *sections = message["blocks"]
    assert 0 < len(header["text"]["text"]) <= 150
    for section in sections:
        text = section["text"]["text"]
        assert 0 < len(text) <= 3000
        assert slack_seen(text)[1] == []


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ],
)
async def test_slack_refusals_fail_for_good_with_slacks_reason(
    build: Any, slack: SlackWebhook, status: int, said: str
) -> None:
    slack.status = (status, said)
    notifier = build(SlackNotifier, **slack_options(slack))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent and str(failure.value).endswith(f"HTTP {status} from "
        + slack.url.removeprefix("http://") + f": {said}")  # fmt: skip
    assert "secret" not in str(failure.value)


async def test_slack_wrong_webhook_secret_fails_for_good_without_showing_it(
    build: Any, slack: SlackWebhook
) -> None:
    notifier = build(SlackNotifier, url=slack.url + "/services/T0001/B0002/wrongSecret")
    with pytest.raises(NotifyError, match="invalid_token") as failure:
        await notifier.send(make_event())
    assert failure.value.permanent and "wrongSecret" not in str(failure.value)


@pytest.mark.parametrize("status", [429, 500])
async def test_slack_limits_and_server_errors_are_retried(
    build: Any, slack: SlackWebhook, status: int
) -> None:
    notifier = build(SlackNotifier, **slack_options(slack))
    await refused_once_then_delivered(notifier, slack, status)


# --- All four -------------------------------------------------------------------------------


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


# Options each kind accepts; tests/test_notify_chat.py checks every kind's required and unknown
# options against these and its own.
VALID: dict[type, dict[str, object]] = {
    NtfyNotifier: {"topic": NTFY_TOPIC},
    GotifyNotifier: {"server": "https://gotify.example.org", "token": GOTIFY_TOKEN},
    DiscordNotifier: {"url": f"https://discord.com/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}"},
    SlackNotifier: {"url": "https://hooks.slack.com" + SLACK_PATH},
}


@pytest.mark.parametrize(
    ("kind", "options", "key"),
    [
        (NtfyNotifier, {"topic": "ops/alerts"}, "topic"),
        (NtfyNotifier, {"server": "ntfy.sh"}, "server"),
        (NtfyNotifier, {"priority_down": "loud"}, "priority_down"),
        (NtfyNotifier, {"priority_up": 6}, "priority_up"),
        (NtfyNotifier, {"token": "tk_x", "username": "u", "password": "secret"}, "token"),
        (NtfyNotifier, {"username": "u"}, "password"),
        (NtfyNotifier, {"password": "secret"}, "username"),
        (GotifyNotifier, {"priority_down": 11}, "priority_down"),
        (GotifyNotifier, {"token": " "}, "token"),
        (DiscordNotifier, {"url": "https://discord.com/channels/1/2"}, "url"),
        (DiscordNotifier, {"username": "x" * 81}, "username"),
        (DiscordNotifier, {"username": "Discord alerts"}, "username"),
        (SlackNotifier, {"url": "hooks.slack.com/services/T/B/X"}, "url"),
        (SlackNotifier, {"timeout": "soon"}, "timeout"),
    ],
)
def test_a_wrong_option_value_is_named(kind: type, options: dict[str, object], key: str) -> None:
    with pytest.raises(OptionError) as failure:
        kind("push", {**VALID[kind], **options})
    assert failure.value.key == key
    assert "secret" not in failure.value.message


# --- Through the daemon ---------------------------------------------------------------------


async def test_a_check_going_down_reaches_all_four_services(
    start_daemon: Any,
    tmp_path: Path,
    ntfy: NtfyServer,
    gotify: GotifyServer,
    discord: DiscordWebhook,
    slack: SlackWebhook,
) -> None:
    (tmp_path / "ntfy.token").write_text(NTFY_TOKEN + "\n")
    (tmp_path / "discord.url").write_text(f"{discord_options(discord)['url']}\n")
    daemon: Daemon = await start_daemon(
        f"""
[[notifier]]
name = "phone"
type = "ntfy"
server = "{ntfy.url}"
topic = "{NTFY_TOPIC}"
token_file = "ntfy.token"
default = true

[[notifier]]
name = "gotify"
type = "gotify"
server = "{gotify.url}"
token = "{GOTIFY_TOKEN}"
default = true

[[notifier]]
name = "discord"
type = "discord"
url_file = "discord.url"
default = true

[[notifier]]
name = "slack"
type = "slack"
url = "{slack.url}{SLACK_PATH}"
default = true
"""
    )
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=OUTPUT)
    await daemon.advance(7)
    services = (ntfy, gotify, discord, slack)
    await eventually(lambda: all(service.accepted for service in services))
    assert ntfy.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert ntfy.accepted[0]["click"].endswith(f"/checks/{unique_key(check.uuid)}")
    assert gotify.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error" in discord.accepted[0]["embeds"][0]["description"]
    assert slack.accepted[0]["text"] == ":red_circle: backup is DOWN (missed ping)"
    await eventually(lambda: _all_sent(daemon))


async def _all_sent(daemon: Daemon) -> bool:
    rows = await daemon.query("SELECT notifier, state FROM outbox ORDER BY notifier")
    return rows == [(n, "sent") for n in ("discord", "gotify", "phone", "slack")]
