"""The `telegram` notifier: a message from a bot to a chat, through the Bot API's sendMessage.

The text is Telegram's HTML: the summary in bold, the details, the end of the job's output in a
<pre> block and the check's link. Every piece of check data is escaped, so a check named
`<b>x</b>` is shown as written instead of breaking the message, and the text is cut to fit
Telegram's 4096-character limit, keeping the newest output. The bot token sits in the URL path
(`/bot<token>/sendMessage`), so errors name only the host, and the token is scrubbed from the
service's answer as well.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.message_parts import details
from heartbeatd.notify.options import OptionError, Options

LIMIT = 4096  # characters of text per message, after entity parsing
SUMMARY_LIMIT = 512
OUTPUT = "\n\n<b>Last output:</b>\n<pre>{}</pre>"
TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
CHAT_ID = re.compile(r"-?[0-9]+|@[A-Za-z][A-Za-z0-9_]{3,}")


class TelegramNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("telegram", options)
        self.name = name
        self.api_url: str = read.url("api_url", "https://api.telegram.org").rstrip("/")
        self.token: str = read.str("bot_token")
        if not TOKEN.fullmatch(self.token):
            hint = " (without the 'bot' prefix)" if self.token.startswith("bot") else ""
            raise OptionError("bot_token", f"expected a token like 123456789:AAE...{hint}")
        self.chat_id: int | str = _chat_id(read, options.get("chat_id"))
        self.thread_id: int | None = read.int("message_thread_id", None, low=1)
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        message: dict[str, Any] = {
            "chat_id": self.chat_id,
            "text": render(event),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        if self.thread_id is not None:
            message["message_thread_id"] = self.thread_id
        url = f"{self.api_url}/bot{self.token}/sendMessage"
        try:
            await self.request("POST", url, json=message)
        except NotifyError as e:
            raise explained(e, _words, {"bot_token": self.token}, _wait) from None


def _chat_id(read: Options, raw: object) -> int | str:
    """A numeric chat ID (negative for groups) or "@channelname", as a number or a string."""
    if isinstance(raw, int):
        return read.int("chat_id", low=-(2**63), high=2**63 - 1)
    value: str = read.str("chat_id")
    if not CHAT_ID.fullmatch(value):
        example = "-1001234567890 or @channelname"
        raise OptionError("chat_id", f"expected a chat ID like {example}, got {value!r}")
    return value


def render(event: Event) -> str:
    """The message in Telegram's HTML, escaped, at most LIMIT characters long."""
    head = f"<b>{_prefix(event.summary, SUMMARY_LIMIT)}</b>"
    link = f"\n\n{_prefix(event.check_url, 1024)}"
    tail = event.output_tail(4 * LIMIT).strip()
    frame = _length(OUTPUT.format(""))
    room = LIMIT - _length(head) - _length(link)
    # The details get what the output leaves them, and at least half when both are long.
    wanted = frame + _length(html.escape(tail, quote=False)) if tail else 0
    lines = details(event)
    body = "\n\n" + _prefix(lines, room - min(wanted, room // 2) - 2) if lines else ""
    room -= _length(body)
    output = ""
    if tail and room - frame >= min(wanted - frame, 40):  # all of it, or a useful part
        output = OUTPUT.format(_suffix(tail, room - frame))
    return head + body + output + link


def _length(text: str) -> int:
    """Telegram counts UTF-16 code units: an emoji outside the BMP is two."""
    return len(text.encode("utf-16-le")) // 2


def _prefix(text: str, budget: int) -> str:
    """The escaped start of `text`, with '…' when cut, at most `budget` long."""
    escaped = html.escape(text, quote=False)
    if _length(escaped) <= budget:
        return escaped
    out, used = [], 1
    for char in text:
        piece = html.escape(char, quote=False)
        used += _length(piece)
        if used > budget:
            break
        out.append(piece)
    return "".join(out) + "…"


def _suffix(text: str, budget: int) -> str:
    """The escaped end of `text`, with '…' when cut, at most `budget` long."""
    escaped = html.escape(text, quote=False)
    if _length(escaped) <= budget:
        return escaped
    out, used = [], 1
    for char in reversed(text):
        piece = html.escape(char, quote=False)
        used += _length(piece)
        if used > budget:
            break
        out.append(piece)
    return "…" + "".join(reversed(out))


def _words(answer: dict[str, Any]) -> object:
    return answer.get("description")


def _wait(answer: dict[str, Any]) -> object:
    parameters = answer.get("parameters")
    return parameters.get("retry_after") if isinstance(parameters, dict) else None
