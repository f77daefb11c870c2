"""The `matrix` notifier: a message in a Matrix room, through the client-server API.

One PUT to /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId} per event, with the
plain text and an HTML version (summary in bold, output in a code block, every piece of check
data escaped). The transaction ID is made from the event's idempotency key, so when a PUT did
reach the homeserver but its answer was lost, the retry is recognised and the room gets one
message, not two. Reminders and tests share their key with earlier ones, so they get a fresh
transaction ID each time instead (the homeserver would silently drop them otherwise).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.options import OptionError, Options

OUTPUT_LIMIT = 1000  # bytes of the job's output quoted in the message


class MatrixNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("matrix", options)
        self.name = name
        self.homeserver: str = read.url("homeserver").rstrip("/")
        self.access_token: str = read.str("access_token")
        if not self.access_token.strip():
            raise OptionError("access_token", "expected an access token, got an empty string")
        self.room_id: str = read.str("room_id")
        if not self.room_id.startswith("!"):
            hint = " (that is an alias)" if self.room_id.startswith("#") else ""
            raise OptionError(
                "room_id",
                f"expected a room ID like '!abc:example.org'{hint}, got {self.room_id!r}; "
                "Element shows it under Room settings > Advanced",
            )
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        room = quote(self.room_id, safe="")
        txn = quote(transaction_id(event, self.name), safe="")
        url = f"{self.homeserver}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
        content = {
            "msgtype": "m.text",
            "body": event.text(OUTPUT_LIMIT),
            "format": "org.matrix.custom.html",
            "formatted_body": render(event),
        }
        headers = {"Authorization": f"Bearer {self.access_token}"}
        try:
            await self.request("PUT", url, json=content, headers=headers)
        except NotifyError as e:
            raise explained(e, _words, {"access_token": self.access_token}) from None


def transaction_id(event: Event, notifier: str) -> str:
    """The same for every attempt at one notification, so the homeserver sends it once."""
    return f"{event.key}-{notifier}"


def render(event: Event) -> str:
    """The message as Matrix HTML (org.matrix.custom.html), every piece of check data escaped."""
    lines = replace(event, last_body=b"").text().split("\n")
    url = lines.pop() if lines[-1] == event.check_url else ""
    out = f"<b>{_escape(lines[0])}</b>"
    details = "\n".join(lines[1:]).strip("\n")
    if details:
        out += "<br><br>" + "<br>".join(_escape(line) for line in details.split("\n"))
    tail = event.output_tail(OUTPUT_LIMIT).strip()
    if tail:
        out += f"<br><br><b>Last output:</b><pre><code>{_escape(tail)}</code></pre>"
    if url:
        out += ("" if tail else "<br><br>") + f'<a href="{html.escape(url)}">{_escape(url)}</a>'
    return out


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _words(answer: dict[str, Any]) -> object:
    """The homeserver's errcode and error, e.g. "M_FORBIDDEN: not in the room"."""
    code = answer.get("errcode")
    return f"{code}: {answer.get('error', '')}".rstrip(": ") if isinstance(code, str) else None
