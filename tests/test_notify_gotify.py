"""Gotify (heartbeatd/notify/gotify.py), against a loopback stand-in for a Gotify server.

The stand-in checks requests the way the real service does (the app token, content type, required
fields, priority, namespaced extras) and answers with the service's own success and error shapes, so
a test passes only when the real service would have accepted the message.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from heartbeatd.notify import NotifyError
from heartbeatd.notify.gotify import GotifyNotifier
from tests.notify_helpers import (
    CHECK_URL,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

GOTIFY_TOKEN = "AGIVi2Ah3Oks.Xo"
VALID: dict[str, object] = {"server": "https://gotify.example.org", "token": GOTIFY_TOKEN}


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


async def serve_gotify(aiohttp_server: Any) -> GotifyServer:
    """A Gotify server stand-in on a loopback port; the dispatch tests start one too."""
    server = GotifyServer()
    await serve(aiohttp_server, server, [web.post("/gotify/message", server.message)])
    server.url += "/gotify"
    return server


@pytest.fixture
async def gotify(aiohttp_server: Any) -> GotifyServer:
    return await serve_gotify(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"priority_down": 11}, "priority_down"),
        ({"token": " "}, "token"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(GotifyNotifier, {**VALID, **options}, key)
