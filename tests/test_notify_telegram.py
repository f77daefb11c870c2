"""Telegram, Pushover, Matrix and Apprise, each against a loopback stand-in for its service.

The stand-ins check requests the way the real services do (method, path, token position,
content type, required fields, limits) and answer with the services' own error shapes, so a
test passes only when the real service would have accepted the message.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError, build_notifiers
from heartbeatd.notify.apprise_urls import AppriseNotifier
from heartbeatd.notify.matrix import MatrixNotifier
from heartbeatd.notify.options import OptionError
from heartbeatd.notify.pushover import PushoverNotifier
from heartbeatd.notify.telegram import TelegramNotifier, render
from tests.conftest import Daemon, eventually
from tests.notify_helpers import (
    OUTPUT,
    T0,
    UUID,
    Service,
    make_event,
    notifiers,
    refused_once_then_delivered,
    serve,
)
from tests.test_notify_slack import VALID as PUSH_VALID

# Apprise's email plugin imports imghdr, deprecated since Python 3.11: its business, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

BOT_TOKEN = "123456789:AAH-secret_bot_token"
PUSHOVER_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
PUSHOVER_USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
MATRIX_TOKEN = "syt_aGVhcnRiZWF0ZA_secretMatrixToken_1a2b3c"
ROOM = "!ops:example.org"


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., Any]]:
    """Make notifiers and close them after the test."""
    async with notifiers() as make:
        yield make


# --- Telegram -------------------------------------------------------------------------------

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


@pytest.fixture
async def telegram(aiohttp_server: Any) -> TelegramApi:
    api = TelegramApi()
    return await serve(aiohttp_server, api, [web.post("/bot{token}/sendMessage", api.send_message)])


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


# --- Pushover -------------------------------------------------------------------------------


class PushoverApi(Service):
    async def messages(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self.error(400, "message", "message cannot be blank")
        form = dict(await request.post())
        if form.get("token") != PUSHOVER_TOKEN:
            return self.error(400, "token", "application token is invalid")
        if form.get("user") != PUSHOVER_USER:
            return self.error(
                400, "user", "user identifier is not a valid user, group, or subscribed user key"
            )
        if (answer := self.scripted()) is not None:
            return answer
        message = str(form.get("message", ""))
        if not message:
            return self.error(400, "message", "message cannot be blank")
        if len(message) > 1024:
            return self.error(400, "message", "message cannot be longer than 1024 characters")
        if len(str(form.get("title", ""))) > 250:
            return self.error(400, "title", "title cannot be longer than 250 characters")
        if form.get("priority") == "2" and not ("retry" in form and "expire" in form):
            return self.error(400, "retry", "retry is invalid")
        self.accepted.append(form)
        return web.json_response({"status": 1, "request": "e460545a-8e8e-4c0c-bb2c-2a0e1e9d1c9a"})

    def error(self, status: int, field: str, error: str) -> web.Response:
        body = {
            field: "invalid",
            "errors": [f"{error}, see https://pushover.net/api"],
            "status": 0,
            "request": "5042853c-402d-4a18-abcb-168734a801de",
        }
        return web.json_response(body, status=status)


@pytest.fixture
async def pushover(aiohttp_server: Any) -> PushoverApi:
    api = PushoverApi()
    return await serve(aiohttp_server, api, [web.post("/1/messages.json", api.messages)])


def pushover_options(api: PushoverApi, **options: object) -> dict[str, object]:
    return {"api_url": api.url, "token": PUSHOVER_TOKEN, "user": PUSHOVER_USER, **options}


async def test_pushover_sends_down_urgently_and_up_quietly(
    build: Any, pushover: PushoverApi
) -> None:
    options = pushover_options(pushover, device=["phone", "tablet"], sound="siren")
    notifier = build(PushoverNotifier, **options)
    await notifier.send(make_event("down"))
    await notifier.send(make_event("up"))
    down, up = pushover.accepted
    assert down["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error: connection refused" in down["message"]
    assert (
        down["url"] == f"http://hb.test/checks/{unique_key(UUID)}" and "backup" in down["url_title"]
    )
    assert (down["priority"], down["device"], down["sound"]) == ("1", "phone,tablet", "siren")
    assert down["timestamp"] == str(int(T0))
    assert up["title"] == "backup is UP again after 1h down" and up["priority"] == "0"


async def test_pushover_emergency_priority_is_accepted(build: Any, pushover: PushoverApi) -> None:
    notifier = build(PushoverNotifier, **pushover_options(pushover, priority_down=2))
    await notifier.send(make_event())
    assert pushover.accepted[0]["priority"] == "2"


async def test_pushover_cuts_long_output_to_the_message_limit(
    build: Any, pushover: PushoverApi
) -> None:
    notifier = build(PushoverNotifier, **pushover_options(pushover))
    body = b"".join(b"step %04d done\n" % i for i in range(5000))
    await notifier.send(make_event(body=body))
    await notifier.send(make_event(desc="runbook: " + "see the wiki " * 200))
    long_output, long_desc = (form["message"] for form in pushover.accepted)
    assert long_output.startswith("backup is DOWN (missed ping)")
    assert long_output.endswith("step 4999 done")
    assert long_desc.endswith("pg_dump: error: connection refused")  # not crowded out


async def test_pushover_bad_token_fails_for_good_with_pushovers_reason(
    build: Any, pushover: PushoverApi
) -> None:
    wrong = "aWrongTokenThatIsSecret0123456"
    notifier = build(PushoverNotifier, **pushover_options(pushover, token=wrong))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent
    assert "application token is invalid" in str(failure.value)
    assert wrong not in str(failure.value) and PUSHOVER_USER not in str(failure.value)


async def test_pushover_server_errors_are_retried(build: Any, pushover: PushoverApi) -> None:
    notifier = build(PushoverNotifier, **pushover_options(pushover))
    await refused_once_then_delivered(notifier, pushover, 503)


# --- Matrix ---------------------------------------------------------------------------------


class Homeserver(Service):
    """Like Synapse: a repeated transaction ID answers the first event's ID, sending nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions: dict[str, str] = {}
        self.puts: list[tuple[str, str]] = []  # (raw path, txnId) of every PUT

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.error(401, "M_MISSING_TOKEN", "Missing access token")
        if auth != f"Bearer {MATRIX_TOKEN}":
            return self.error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
        if request.match_info["room"] != ROOM:
            return self.error(403, "M_FORBIDDEN", "User @hb:example.org not in room")
        if (answer := self.scripted()) is not None:
            return answer
        if request.content_type != "application/json":
            return self.error(400, "M_NOT_JSON", "Content not JSON.")
        content = await request.json()
        if not isinstance(content.get("body"), str) or not isinstance(content.get("msgtype"), str):
            return self.error(400, "M_BAD_JSON", "'body' and 'msgtype' are required")
        txn = request.match_info["txn"]
        self.puts.append((request.raw_path, txn))
        if txn not in self.transactions:
            self.transactions[txn] = f"$event{len(self.accepted)}"
            self.accepted.append(content)
        return web.json_response({"event_id": self.transactions[txn]})

    def error(self, status: int, errcode: str, error: str) -> web.Response:
        return web.json_response({"errcode": errcode, "error": error}, status=status)


@pytest.fixture
async def homeserver(aiohttp_server: Any) -> Homeserver:
    server = Homeserver()
    path = "/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
    return await serve(aiohttp_server, server, [web.put(path, server.send)])


def matrix_options(server: Homeserver, **options: object) -> dict[str, object]:
    return {"homeserver": server.url, "access_token": MATRIX_TOKEN, "room_id": ROOM, **options}


async def test_matrix_posts_down_and_up_to_the_room(build: Any, homeserver: Homeserver) -> None:
    notifier = build(MatrixNotifier, **matrix_options(homeserver))
    await notifier.send(make_event("down", name="db <primary>"))
    await notifier.send(make_event("up", name="db <primary>"))
    down, up = homeserver.accepted
    assert down["msgtype"] == "m.text" and down["format"] == "org.matrix.custom.html"
    assert down["body"].startswith("db <primary> is DOWN (missed ping)")
    assert "pg_dump: error: connection refused" in down["body"]
    assert down["formatted_body"].startswith("<b>db &lt;primary&gt; is DOWN (missed ping)</b>")
    assert "<pre><code>dumping db...\npg_dump: error" in down["formatted_body"]
    assert f'<a href="http://hb.test/checks/{unique_key(UUID)}">' in down["formatted_body"]
    assert up["body"].startswith("db <primary> is UP again after 1h down")


async def test_matrix_retrying_an_event_reuses_its_transaction_id(
    build: Any, homeserver: Homeserver
) -> None:
    notifier = build(MatrixNotifier, **matrix_options(homeserver))
    down = make_event("down")
    await notifier.send(down)
    await notifier.send(down)  # an answer lost on the way back: the dispatcher tries again
    assert homeserver.puts[0][1] == homeserver.puts[1][1]
    assert down.key in homeserver.puts[0][1]
    assert len(homeserver.accepted) == 1  # the room shows it once
    await notifier.send(make_event("up"))
    assert len(homeserver.accepted) == 2


async def test_matrix_reminders_and_tests_are_not_swallowed_as_repeats(
    build: Any, homeserver: Homeserver
) -> None:
    notifier = build(MatrixNotifier, **matrix_options(homeserver))
    for outbox_id in (21, 22):  # two reminders of one outage: two outbox rows
        await notifier.send(make_event("repeat", outbox_id=outbox_id))
    await notifier.send(make_event("test"))
    await notifier.send(replace(make_event("test"), now=T0 + 999))  # a later test message
    assert len(homeserver.accepted) == 4


async def test_matrix_bad_token_fails_for_good_without_showing_it(
    build: Any, homeserver: Homeserver
) -> None:
    wrong = "syt_d3Jvbmc_wrongSecretToken"
    notifier = build(MatrixNotifier, **matrix_options(homeserver, access_token=wrong))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent
    assert "M_UNKNOWN_TOKEN" in str(failure.value)
    assert wrong not in str(failure.value)


async def test_matrix_room_it_cannot_post_in_fails_for_good(
    build: Any, homeserver: Homeserver
) -> None:
    notifier = build(MatrixNotifier, **matrix_options(homeserver, room_id="!other:example.org"))
    with pytest.raises(NotifyError) as failure:
        await notifier.send(make_event())
    assert failure.value.permanent and "M_FORBIDDEN" in str(failure.value)


async def test_matrix_server_errors_are_retried(build: Any, homeserver: Homeserver) -> None:
    notifier = build(MatrixNotifier, **matrix_options(homeserver))
    await refused_once_then_delivered(notifier, homeserver, 502)


# --- Apprise --------------------------------------------------------------------------------


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


@pytest.fixture
async def sink(aiohttp_server: Any) -> JsonSink:
    receiver = JsonSink()
    return await serve(aiohttp_server, receiver, [web.post("/{path}", receiver.notify)])


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


# --- Options --------------------------------------------------------------------------------

VALID: dict[type, dict[str, object]] = {
    TelegramNotifier: {"bot_token": BOT_TOKEN, "chat_id": 42},
    PushoverNotifier: {"token": PUSHOVER_TOKEN, "user": PUSHOVER_USER},
    MatrixNotifier: {
        "homeserver": "https://matrix.example.org",
        "access_token": MATRIX_TOKEN,
        "room_id": ROOM,
    },
    AppriseNotifier: {"urls": ["json://127.0.0.1/x"]},
    **PUSH_VALID,
}


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind, options in VALID.items() for key in options]
)
def test_a_missing_required_option_is_named(kind: type, key: str) -> None:
    options = {k: v for k, v in VALID[kind].items() if k != key}
    with pytest.raises(OptionError) as failure:
        kind("notifier", options)
    assert failure.value.key == key and "required" in failure.value.message


@pytest.mark.parametrize("kind", list(VALID))
def test_an_unknown_option_is_named(kind: type) -> None:
    with pytest.raises(OptionError) as failure:
        kind("notifier", {**VALID[kind], "tokn": "x"})
    assert failure.value.key == "tokn" and "unknown option" in failure.value.message


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        (TelegramNotifier, "bot_token", "bot123456789:AAH-secret"),
        (TelegramNotifier, "chat_id", "ops channel"),
        (TelegramNotifier, "chat_id", True),
        (TelegramNotifier, "message_thread_id", "42"),
        (TelegramNotifier, "api_url", "api.telegram.org"),
        (TelegramNotifier, "timeout", "soon"),
        (PushoverNotifier, "priority_down", 3),
        (PushoverNotifier, "user", ""),
        (PushoverNotifier, "device", 7),
        (MatrixNotifier, "room_id", "#ops:example.org"),
        (MatrixNotifier, "homeserver", "matrix.example.org"),
        (AppriseNotifier, "urls", []),
        (AppriseNotifier, "timeout", "forever"),
    ],
)
def test_a_wrong_option_value_is_named(kind: type, key: str, value: object) -> None:
    with pytest.raises(OptionError) as failure:
        kind("chat", {**VALID[kind], key: value})
    assert failure.value.key == key
    assert "secret" not in failure.value.message


# --- Through the daemon ---------------------------------------------------------------------


async def test_a_check_going_down_reaches_all_four_services(
    start_daemon: Any,
    tmp_path: Path,
    telegram: TelegramApi,
    pushover: PushoverApi,
    homeserver: Homeserver,
    sink: JsonSink,
) -> None:
    (tmp_path / "telegram.token").write_text(BOT_TOKEN + "\n")
    daemon: Daemon = await start_daemon(
        f"""
[[notifier]]
name = "telegram"
type = "telegram"
api_url = "{telegram.url}"
bot_token_file = "telegram.token"
chat_id = "-1001234567890"
default = true

[[notifier]]
name = "pushover"
type = "pushover"
api_url = "{pushover.url}"
token = "{PUSHOVER_TOKEN}"
user = "{PUSHOVER_USER}"
default = true

[[notifier]]
name = "matrix"
type = "matrix"
homeserver = "{homeserver.url}"
access_token = "{MATRIX_TOKEN}"
room_id = "{ROOM}"
default = true

[[notifier]]
name = "apprise"
type = "apprise"
urls = ["{sink.apprise_url()}"]
timeout = "20s"
default = true
"""
    )
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=OUTPUT)
    await daemon.advance(7)
    services = (telegram, pushover, homeserver, sink)
    await eventually(lambda: all(service.accepted for service in services))
    assert telegram.accepted[0]["bold"][0] == "backup is DOWN (missed ping)"
    assert pushover.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error: connection refused" in homeserver.accepted[0]["body"]
    assert sink.accepted[0]["type"] == "failure"
    await eventually(lambda: _all_sent(daemon))


async def _all_sent(daemon: Daemon) -> bool:
    rows = await daemon.query("SELECT notifier, state FROM outbox ORDER BY notifier")
    return rows == [(n, "sent") for n in ("apprise", "matrix", "pushover", "telegram")]
