"""The `ntfy` notifier: a push notification through ntfy.sh or a self-hosted ntfy server.

One POST per event in ntfy's "publish as JSON" form: the JSON object goes to the server's root
URL and names the topic itself. The JSON form rather than the header form (POST /<topic> with
Title/Priority/Tags headers) because HTTP headers cannot carry a check named in any language,
and JSON needs no escaping rules of its own. The message is plain text (ntfy renders Markdown
only when asked to), cut to ntfy's 4096-byte message limit keeping the newest output; beyond
it ntfy would turn the message into an attachment.

Options:
  server         the ntfy server; default https://ntfy.sh
  topic          the topic (required): letters, digits, `-` and `_`, at most 64
  token          an access token (tk_...), sent as a Bearer token; or
  username, password   for Basic authentication
  priority_down  for down and its reminders: min, low, default, high, urgent or 1-5; default high
  priority_up    for up, late and tests; default "default"
  timeout        default 10s
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.message_parts import details
from heartbeatd.notify.options import OptionError, Options

MESSAGE_LIMIT = 4096  # bytes; ntfy sends a longer message as an attachment instead
TITLE_LIMIT = 250
OUTPUT_LIMIT = 1500  # characters of the job's output in the message
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}
TAGS = {  # ntfy shows these as emoji before the title
    "down": "rotating_light",
    "repeat": "rotating_light",
    "late": "hourglass",
    "up": "white_check_mark",
}


class NtfyNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("ntfy", options)
        self.name = name
        self.server: str = read.url("server", "https://ntfy.sh").rstrip("/")
        self.topic: str = read.str("topic")
        if not TOPIC.fullmatch(self.topic):
            raise OptionError("topic", "expected 1 to 64 letters, digits, '-' or '_'")
        self.headers, self.secrets = _auth(read)
        self.priority_down = _priority(read, "priority_down", "high", options.get("priority_down"))
        self.priority_up = _priority(read, "priority_up", "default", options.get("priority_up"))
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        publish: dict[str, Any] = {
            "topic": self.topic,
            "title": _cut(event.summary, TITLE_LIMIT),
            "message": message(event),
            "priority": self.priority_down if event.is_problem else self.priority_up,
            "tags": [TAGS.get(event.kind, "bell")],
            "click": event.check_url,
        }
        try:
            await self.request("POST", f"{self.server}/", json=publish, headers=self.headers)
        except NotifyError as e:
            raise explained(e, _words, self.secrets) from None


def message(event: Event) -> str:
    """The details and the newest output, within ntfy's byte limit. The summary is the title
    and the check's page opens on a tap, so neither is repeated here."""
    lines = details(event)
    tail = event.output_tail(OUTPUT_LIMIT).strip()
    if not tail:
        return _head(lines, MESSAGE_LIMIT)
    heading = "\n\nLast output:\n"
    # The details get what the output leaves them, and at least half when both are long.
    wanted = len(heading.encode()) + len(tail.encode())
    lines = _head(lines, MESSAGE_LIMIT - min(wanted, MESSAGE_LIMIT // 2))
    room = MESSAGE_LIMIT - len(lines.encode()) - len(heading.encode())
    return lines + heading + _tail(tail, room)


def _head(text: str, limit: int) -> str:
    """The start of `text`, at most `limit` UTF-8 bytes, with '…' when cut."""
    if len(text.encode()) <= limit:
        return text
    return text.encode()[: limit - 3].decode("utf-8", "ignore") + "…"


def _tail(text: str, limit: int) -> str:
    """The end of `text`, at most `limit` UTF-8 bytes, with '…' when cut."""
    if len(text.encode()) <= limit:
        return text
    return "…" + text.encode()[-(limit - 3) :].decode("utf-8", "ignore")


def _auth(read: Options) -> tuple[dict[str, str], dict[str, str]]:
    """The request's credentials (a Bearer token, Basic auth, or none for an open topic) and
    the secrets among them, by name, to keep out of error messages."""
    token: str | None = read.str("token", None)
    username: str | None = read.str("username", None)
    password: str | None = read.str("password", None)
    if token is not None and (username is not None or password is not None):
        raise OptionError("token", "give a token or a username and password, not both")
    if (username is None) != (password is None):
        missing, given = ("password", "username") if password is None else ("username", "password")
        raise OptionError(missing, f"required with {given}")
    if token is not None:
        if not token.strip():
            raise OptionError("token", "expected an access token, got an empty string")
        return {"Authorization": f"Bearer {token}"}, {"token": token}
    if username is not None and password is not None:
        if ":" in username:
            raise OptionError("username", "cannot contain ':' (Basic authentication)")
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}, {"password": password, "credentials": pair}
    return {}, {}


def _priority(read: Options, key: str, default: str, given: object) -> int:
    """A priority by ntfy's name for it or its number, as ntfy itself takes both."""
    if isinstance(given, int) and not isinstance(given, bool):
        return int(read.int(key, low=1, high=5))
    return PRIORITIES[read.choice(key, list(PRIORITIES), default)]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _words(answer: dict[str, Any]) -> object:
    return answer.get("error")
