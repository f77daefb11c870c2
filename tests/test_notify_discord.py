"""Discord (heartbeatd/notify/discord.py), against a loopback stand-in for a webhook.

The stand-in checks requests the way the real service does (webhook ID and token, content type,
embed limits) and answers with the service's own success and error shapes, so a test passes only
when the real service would have accepted the message. A check's name that would ping a whole
channel there fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeatd.notify import NotifyError
from heartbeatd.notify.discord import DiscordNotifier, description
from tests.notify_helpers import (
    CHECK_URL,
    HOSTILE_NAME,
    Service,
    assert_option_refused,
    make_event,
    serve,
)

DISCORD_ID = "1234567890123456789"
DISCORD_TOKEN = "a1B2c3-D4e5_F6g7H8i9J0kLmNoPqRsTuVwXyZ"
VALID: dict[str, object] = {"url": f"https://discord.com/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}"}

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


async def serve_discord(aiohttp_server: Any) -> DiscordWebhook:
    """A Discord webhook stand-in on a loopback port; the dispatch tests start one too."""
    webhook = DiscordWebhook()
    route = web.post("/api/webhooks/{id}/{token}", webhook.execute)
    return await serve(aiohttp_server, webhook, [route])


@pytest.fixture
async def discord(aiohttp_server: Any) -> DiscordWebhook:
    return await serve_discord(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"url": "https://discord.com/channels/1/2"}, "url"),
        ({"username": "x" * 81}, "username"),
        ({"username": "Discord alerts"}, "username"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(DiscordNotifier, {**VALID, **options}, key)
