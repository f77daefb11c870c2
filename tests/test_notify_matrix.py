"""Matrix (heartbeatd/notify/matrix.py), against a loopback stand-in for a homeserver.

The stand-in checks requests the way the real service does (method, path, access token, room
membership, content type, required fields, transaction IDs) and answers with the service's own
success and error shapes, so a test passes only when the real service would have accepted the
message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.matrix import MatrixNotifier
from tests.notify_helpers import (
    T0,
    UUID,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

MATRIX_TOKEN = "syt_aGVhcnRiZWF0ZA_secretMatrixToken_1a2b3c"
ROOM = "!ops:example.org"
VALID: dict[str, object] = {
    "homeserver": "https://matrix.example.org",
    "access_token": MATRIX_TOKEN,
    "room_id": ROOM,
}


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


async def serve_matrix(aiohttp_server: Any) -> Homeserver:
    """A Matrix homeserver stand-in on a loopback port; the dispatch tests start one too."""
    server = Homeserver()
    path = "/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
    return await serve(aiohttp_server, server, [web.put(path, server.send)])


@pytest.fixture
async def homeserver(aiohttp_server: Any) -> Homeserver:
    return await serve_matrix(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"room_id": "#ops:example.org"}, "room_id"),
        ({"homeserver": "matrix.example.org"}, "homeserver"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(MatrixNotifier, {**VALID, **options}, key)
