"""Slack (heartbeatd/notify/slack.py), against a loopback stand-in for an incoming webhook.

The stand-in checks requests the way the real service does (webhook path, content type, block kinds
and limits) and answers with the service's own success and error shapes, so a test passes only when
the real service would have accepted the message. A check's name that would ping a whole channel
there fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeatd.notify import NotifyError
from heartbeatd.notify.slack import SlackNotifier, payload
from tests.notify_helpers import (
    CHECK_URL,
    HOSTILE_NAME,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

SLACK_PATH = "/services/T0001/B0002/XXXXsecretXXXX"
VALID: dict[str, object] = {"url": "https://hooks.slack.com" + SLACK_PATH}

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


async def serve_slack(aiohttp_server: Any) -> SlackWebhook:
    """A Slack webhook stand-in on a loopback port; the dispatch tests start one too."""
    webhook = SlackWebhook()
    return await serve(aiohttp_server, webhook, [web.post("/services/{path:.*}", webhook.post)])


@pytest.fixture
async def slack(aiohttp_server: Any) -> SlackWebhook:
    return await serve_slack(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"url": "hooks.slack.com/services/T/B/X"}, "url"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(SlackNotifier, {**VALID, **options}, key)
