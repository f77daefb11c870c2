"""The `gotify` notifier: a message to a self-hosted Gotify server, through its REST API.

One JSON POST to /message per event, authenticated by an application token in the
X-Gotify-Key header (not in the URL's query string, where proxies would log it). The message
is plain text: `client::display` says so explicitly, so a client set to render Markdown does
not interpret a check's name or its output. `client::notification` makes a tap on the
notification open the check's page.

Options:
  server         the Gotify server's base URL (required), e.g. https://gotify.example.org
  token          the application's token (required); Gotify: Apps > Create application
  priority_down  for down and its reminders, 0 to 10; default 8 (Android shows it at once)
  priority_up    for up, late and tests, 0 to 10; default 5
  timeout        default 10s
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.options import OptionError, Options

OUTPUT_LIMIT = 2000  # characters of the job's output in the message


class GotifyNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("gotify", options)
        self.name = name
        self.server: str = read.url("server").rstrip("/")
        self.token: str = read.str("token")
        if not self.token.strip():
            raise OptionError("token", "expected the application's token, got an empty string")
        self.priority_down: int = read.int("priority_down", 8, low=0, high=10)
        self.priority_up: int = read.int("priority_up", 5, low=0, high=10)
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        message = {
            "title": event.summary,
            "message": event.text(OUTPUT_LIMIT),
            "priority": self.priority_down if event.is_problem else self.priority_up,
            "extras": {
                "client::display": {"contentType": "text/plain"},
                "client::notification": {"click": {"url": event.check_url}},
            },
        }
        headers = {"X-Gotify-Key": self.token}
        try:
            await self.request("POST", f"{self.server}/message", json=message, headers=headers)
        except NotifyError as e:
            raise explained(e, _words, {"token": self.token}) from None


def _words(answer: dict[str, Any]) -> object:
    """Gotify's error and errorDescription, e.g. "Unauthorized: you need to provide ..."."""
    error = answer.get("error")
    if not isinstance(error, str):
        return None
    return f"{error}: {answer.get('errorDescription', '')}".rstrip(": ")
