"""Telegram (heartbeatd/notify/telegram.py), against a loopback stand-in for the Bot API.

The stand-in checks requests the way the real service does (method, path, token position, content
type, required fields, limits, the HTML it parses) and answers with the service's own success and
error shapes, so a test passes only when the real service would have accepted the message.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.telegram import TelegramNotifier, render
from tests.notify_helpers import (
    UUID,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

BOT_TOKEN = "123456789:AAH-secret_bot_token"
VALID: dict[str, object] = {"bot_token": BOT_TOKEN, "chat_id": 42}

TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}


class BadRequest(Exception):
    pass


def telegram_html(raw: str) -> tuple[str, list[str]]:
    """Parse like Telegram's parse_mode=HTML: only its tags, nested properly, every other <, >
    and & escaped. Returns the text a reader sees and the pieces shown in bold."""
    stack: list[str] = []
    text: list[str] = []
    bold: list[str] = []
    for piece in re.split(r"(<[^<>]*>)", raw):
        if piece.startswith("<"):
            tag = re.fullmatch(r"<(/?)([a-z-]+)(\s[^<>]*)?>", piece)
            if tag is None or tag[2] not in TELEGRAM_TAGS:
                raise BadRequest(f"can't parse entities: unsupported start tag {piece!r}")
            if not tag[1]:
                stack.append(tag[2])
            elif not stack or stack.pop() != tag[2]:
                raise BadRequest(f"can't parse entities: unexpected end tag {piece!r}")
        else:
            if "<" in piece or ">" in piece or re.search(r"&(?!(lt|gt|amp|quot|#\d+);)", piece):
                raise BadRequest("can't parse entities: unescaped character")
            plain = html.unescape(piece)
            text.append(plain)
            if "b" in stack:
                bold.append(plain)
    if stack:
        raise BadRequest(f"can't parse entities: can't find end tag for {stack[-1]!r}")
    return "".join(text), bold


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TelegramApi(Service):
    async def send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != BOT_TOKEN:
            return self.error(401, "Unauthorized")
        if (answer := self.scripted()) is not None:
            return answer
        if request.content_type != "application/json":
            return self.error(400, "Bad Request: message text is empty")
        message = await request.json()
        if "chat_id" not in message:
            return self.error(400, "Bad Request: chat_id is empty")
        if message.get("parse_mode") != "HTML":
            return self.error(400, "Bad Request: expected parse_mode HTML in this test")
        try:
            text, bold = telegram_html(message.get("text", ""))
        except BadRequest as e:
            return self.error(400, f"Bad Request: {e}")
        if not text.strip():
            return self.error(400, "Bad Request: message text is empty")
        if utf16_length(text) > 4096:
            return self.error(400, "Bad Request: message is too long")
        self.accepted.append({**message, "seen": text, "bold": bold})
        return web.json_response({"ok": True, "result": {"message_id": len(self.accepted)}})

    def error(self, status: int, description: str) -> web.Response:
        body = {"ok": False, "error_code": status, "description": description}
        return web.json_response(body, status=status)

    def too_many(self) -> web.Response:
        return web.json_response(
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
            status=429,
        )


async def serve_telegram(aiohttp_server: Any) -> TelegramApi:
    """A Telegram Bot API stand-in on a loopback port; the dispatch tests start one too."""
    api = TelegramApi()
    return await serve(aiohttp_server, api, [web.post("/bot{token}/sendMessage", api.send_message)])


@pytest.fixture
async def telegram(aiohttp_server: Any) -> TelegramApi:
    return await serve_telegram(aiohttp_server)


def telegram_options(api: TelegramApi, **options: object) -> dict[str, object]:
    return {"api_url": api.url, "bot_token": BOT_TOKEN, "chat_id": -1001234567890, **options}


async def test_telegram_sends_down_and_up_as_messages_a_person_can_act_on(
    build: Any, telegram: TelegramApi
) -> None:
    notifier = build(TelegramNotifier, **telegram_options(telegram, message_thread_id=42))
    await notifier.send(make_event("down", desc="nightly pg_dump"))
    await notifier.send(make_event("up"))
    down, up = telegram.accepted
    assert down["chat_id"] == -1001234567890 and down["message_thread_id"] == 42
    assert down["disable_web_page_preview"] is True
    assert down["bold"][0] == "backup is DOWN (missed ping)"
    assert "nightly pg_dump" in down["seen"]
    assert "pg_dump: error: connection refused" in down["seen"]
    assert f"http://hb.test/checks/{unique_key(UUID)}" in down["seen"]
    assert up["bold"][0] == "backup is UP again after 1h down"


async def test_telegram_takes_the_chat_id_as_a_string_too(
    build: Any, telegram: TelegramApi
) -> None:
    await build(TelegramNotifier, **telegram_options(telegram, chat_id="@ops_alerts")).send(
        make_event()
    )
    assert telegram.accepted[0]["chat_id"] == "@ops_alerts"
    assert "message_thread_id" not in telegram.accepted[0]


async def test_telegram_shows_hostile_check_data_as_written(
    build: Any, telegram: TelegramApi
) -> None:
    notifier = build(TelegramNotifier, **telegram_options(telegram))
    name = "<b>x</b> & <script>"
    event = make_event(name=name, desc="a <i>b</i> &amp; c", body=b"</pre><a href='x'>&lt;")
    await notifier.send(event)  # Telegram would answer 400 "can't parse entities" otherwise
    message = telegram.accepted[0]
    assert message["bold"][0] == f"{name} is DOWN (missed ping)"
    assert "a <i>b</i> &amp; c" in message["seen"]
    assert "</pre><a href='x'>&lt;" in message["seen"]
    assert "&lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;" in message["text"]


async def test_telegram_shows_a_check_name_with_a_line_break_whole_in_bold(
    build: Any, telegram: TelegramApi
) -> None:
    notifier = build(TelegramNotifier, **telegram_options(telegram))
    await notifier.send(make_event(name="nightly\nbackup", desc="pg_dump of the main db"))
    message = telegram.accepted[0]
    assert message["bold"][0] == "nightly\nbackup is DOWN (missed ping)"
    details = message["seen"].removeprefix(message["bold"][0])
    assert details.startswith("\n\npg_dump of the main db\nSchedule: ")
    assert "backup is DOWN" not in details


async def test_telegram_cuts_a_100_kb_output_to_fit_one_message(
    build: Any, telegram: TelegramApi
) -> None:
    body = b"".join(b"line %05d <tag> & more\n" % i for i in range(4500))[-100_000:]
    assert len(body) == 100_000
    await build(TelegramNotifier, **telegram_options(telegram)).send(make_event(body=body))
    message = telegram.accepted[0]
    assert len(message["text"]) <= 4096  # the raw HTML too, not only the text after parsing
    assert message["bold"][0] == "backup is DOWN (missed ping)"
    assert "line 04499 <tag> & more" in message["seen"]  # the newest output is kept
    assert "line 00000" not in message["seen"]
    assert message["seen"].endswith(f"http://hb.test/checks/{unique_key(UUID)}")


HOSTILE = st.text(st.sampled_from("ab <>&;/\"'\n\u00e9\U0001f525"), max_size=6000)


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=300), desc=HOSTILE, body=HOSTILE)
@example(name="backup", desc="a" * 5000, body="short output")  # a long desc leaves room for it
def test_telegram_accepts_any_check_data_at_any_length(name: str, desc: str, body: str) -> None:
    event = make_event(name=name, desc=desc, body=body.encode())
    text = render(event)
    seen, bold = telegram_html(text)  # raises where Telegram would answer 400
    assert utf16_length(text) <= 4096
    assert event.summary.startswith(bold[0].removesuffix("…"))
    assert seen.endswith(event.check_url)
    assert ("Last output:" in seen) == bool(event.output_tail(4 * 4096).strip())


async def test_telegram_bad_token_fails_for_good_without_showing_the_token(
    build: Any, telegram: TelegramApi
) -> None:
    wrong = "987654321:AAF-wrong_secret_token"
    notifier = build(TelegramNotifier, **telegram_options(telegram, bot_token=wrong))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent
    assert "Unauthorized" in str(failure.value)
    assert "wrong_secret" not in str(failure.value) and "987654321" not in str(failure.value)
    assert telegram.accepted == []


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_telegram_server_errors_and_flood_limits_are_retried(
    build: Any, telegram: TelegramApi, status: int
) -> None:
    notifier = build(TelegramNotifier, **telegram_options(telegram))
    error = await refused_once_then_delivered(notifier, telegram, status)
    assert BOT_TOKEN not in str(error)
    if status == 429:
        assert "retry after 7" in str(error)
        assert error.retry_after == 7  # the dispatcher waits at least that long


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"bot_token": "bot123456789:AAH-secret"}, "bot_token"),
        ({"chat_id": "ops channel"}, "chat_id"),
        ({"chat_id": True}, "chat_id"),
        ({"message_thread_id": "42"}, "message_thread_id"),
        ({"api_url": "api.telegram.org"}, "api_url"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(TelegramNotifier, {**VALID, **options}, key)
