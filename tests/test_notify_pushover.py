"""Pushover (heartbeatd/notify/pushover.py), against a loopback stand-in for its API.

The stand-in checks requests the way the real service does (content type, token and user, required
fields, limits, emergency priority) and answers with the service's own success and error shapes, so
a test passes only when the real service would have accepted the message.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.pushover import PushoverNotifier
from tests.notify_helpers import (
    T0,
    UUID,
    Service,
    assert_option_refused,
    make_event,
    refused_once_then_delivered,
    serve,
)

PUSHOVER_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
PUSHOVER_USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
VALID: dict[str, object] = {"token": PUSHOVER_TOKEN, "user": PUSHOVER_USER}


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


async def serve_pushover(aiohttp_server: Any) -> PushoverApi:
    """A Pushover API stand-in on a loopback port; the dispatch tests start one too."""
    api = PushoverApi()
    return await serve(aiohttp_server, api, [web.post("/1/messages.json", api.messages)])


@pytest.fixture
async def pushover(aiohttp_server: Any) -> PushoverApi:
    return await serve_pushover(aiohttp_server)


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"priority_down": 3}, "priority_down"),
        ({"user": ""}, "user"),
        ({"device": 7}, "device"),
    ],
)
def test_a_wrong_option_value_is_named(options: dict[str, object], key: str) -> None:
    assert_option_refused(PushoverNotifier, {**VALID, **options}, key)
