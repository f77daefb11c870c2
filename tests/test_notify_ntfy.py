"""ntfy (heartbeatd/notify/ntfy.py), against a loopback stand-in for an ntfy server.

The stand-in checks requests the way the real service does (credentials, JSON fields, topic,
priority, size) and answers with the service's own success and error shapes, so a test passes only
when the real service would have accepted the message.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeatd.notify import NotifyError
from heartbeatd.notify.ntfy import NtfyNotifier
from heartbeatd.notify.ntfy import message as ntfy_message
from tests.notify_helpers import (
    CHECK_URL,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
NTFY_TOPIC = "backups_7f3a"
VALID: dict[str, object] = {"topic": NTFY_TOPIC}

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


async def serve_ntfy(aiohttp_server: Any) -> NtfyServer:
    """An ntfy server stand-in on a loopback port; the dispatch tests start one too."""
    server = NtfyServer()
    return await serve(aiohttp_server, server, [web.post("/", server.publish)])


@pytest.fixture
async def ntfy(aiohttp_server: Any) -> NtfyServer:
    return await serve_ntfy(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"topic": "ops/alerts"}, "topic"),
        ({"server": "ntfy.sh"}, "server"),
        ({"priority_down": "loud"}, "priority_down"),
        ({"priority_up": 6}, "priority_up"),
        ({"token": "tk_x", "username": "u", "password": "secret"}, "token"),
        ({"username": "u"}, "password"),
        ({"password": "secret"}, "username"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(NtfyNotifier, {**VALID, **options}, key)
