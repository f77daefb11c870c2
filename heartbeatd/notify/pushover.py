"""The `pushover` notifier: a push message through Pushover's Message API.

One form-encoded POST to /1/messages.json per event. Down (and its reminders) is sent at
`priority_down`, up and tests at `priority_up`; at priority 2 (emergency) Pushover repeats the
alert every RETRY seconds until someone acknowledges it, for at most EXPIRE seconds. The
message is plain text cut to Pushover's 1024 characters, keeping the newest output; the check's
page is the message's supplementary URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.options import OptionError, Options

MESSAGE_LIMIT = 1024
TITLE_LIMIT = 250
URL_TITLE_LIMIT = 100
RETRY = 60  # emergency priority: repeat every minute...
EXPIRE = 3600  # ...for at most an hour, until acknowledged


class PushoverNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("pushover", options)
        self.name = name
        self.api_url: str = read.url("api_url", "https://api.pushover.net").rstrip("/")
        self.token: str = _required(read, "token", "the application's API token")
        self.user: str = _required(read, "user", "the user or group key")
        devices: list[str] | None = read.str_list("device", None)
        self.device = ",".join(devices) if devices else None
        self.priority_down: int = read.int("priority_down", 1, low=-2, high=2)
        self.priority_up: int = read.int("priority_up", 0, low=-2, high=2)
        self.sound: str | None = read.str("sound", None)
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        priority = self.priority_down if event.is_problem else self.priority_up
        name = event.check_name
        form = {
            "token": self.token,
            "user": self.user,
            "title": _cut(event.summary, TITLE_LIMIT),
            "message": message(event),
            "url": event.check_url,
            "url_title": _cut(f"Open {name} in heartbeatd", URL_TITLE_LIMIT),
            "priority": str(priority),
        }
        if event.flip.at > 0:
            form["timestamp"] = str(int(event.flip.at))
        if priority == 2:
            form |= {"retry": str(RETRY), "expire": str(EXPIRE)}
        if self.device:
            form["device"] = self.device
        if self.sound:
            form["sound"] = self.sound
        try:
            await self.request("POST", f"{self.api_url}/1/messages.json", data=form)
        except NotifyError as e:
            raise explained(e, _words, {"token": self.token, "user": self.user}) from None


def message(event: Event) -> str:
    """Event.text() without its link (the message's URL has it), cut to MESSAGE_LIMIT
    characters by shortening the output from its start."""
    text = replace(event, last_body=b"").text()
    if text.endswith(f"\n\n{event.check_url}"):
        text = text[: -len(event.check_url) - 2]
    tail = event.output_tail(4 * MESSAGE_LIMIT).strip()
    heading = "\n\nLast output:\n"
    # The details get what the output leaves them, and at least half when both are long.
    wanted = len(heading) + len(tail) if tail else 0
    text = _cut(text, MESSAGE_LIMIT - min(wanted, MESSAGE_LIMIT // 2))
    room = MESSAGE_LIMIT - len(text) - len(heading)
    if tail:
        text += heading + (tail if len(tail) <= room else "…" + tail[-(room - 1) :])
    return text


def _required(read: Options, key: str, what: str) -> str:
    value: str = read.str(key)
    if not value.strip():
        raise OptionError(key, f"expected {what}, got an empty string")
    return value


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _words(answer: dict[str, Any]) -> object:
    errors = answer.get("errors")
    return "; ".join(str(e) for e in errors) if isinstance(errors, list) else None
