"""The `discord` notifier: an embed posted to a Discord channel through a channel webhook.

One JSON POST per event to the webhook URL with `?wait=true`, so Discord answers only once the
message exists and a rejected message is an error here rather than silently lost. The message
is one embed: the summary as its title (linking to the check's page), red for down, green for
up, the details and the end of the job's output in its description, the flip's time as its
timestamp.

Check data is written as text, never as markup: Markdown characters are backslash-escaped and
the output sits in a code block that it cannot close, so a check named `**x**` or `@everyone`
reads as written. `allowed_mentions` with no parse types also makes Discord refuse to ping
anyone, whatever the text says. The webhook's token is in the URL's path, so errors name only
the host. A 429 is retried, not before Discord's `retry_after`, which the error quotes.

Options:
  url       the webhook URL (required): Channel settings > Integrations > Webhooks > Copy URL,
            https://discord.com/api/webhooks/<id>/<token>
  username  the name to post as; default: the webhook's own name. Discord refuses names
            containing "discord" or "clyde", so they are refused at start-up
  timeout   default 10s
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from heartbeatd.notify import Event, NotifyError, iso
from heartbeatd.notify.http import HttpNotifier, explained
from heartbeatd.notify.message_parts import details
from heartbeatd.notify.options import OptionError, Options

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
USERNAME_LIMIT = 80
OUTPUT = "\n\n**Last output:**\n```\n{}\n```"
COLORS = {"down": 0xE74C3C, "repeat": 0xE74C3C, "late": 0xF39C12, "up": 0x2ECC71}
TEST_COLOR = 0x95A5A6
WEBHOOK_PATH = re.compile(r"/api(/v\d+)?/webhooks/[0-9]+/[A-Za-z0-9_-]+")
MARKDOWN = re.compile(r"([\\*_~`|>#\-\[\]()<@])")


class DiscordNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("discord", options)
        self.name = name
        self.url: str = read.url("url")
        if not WEBHOOK_PATH.fullmatch(urlsplit(self.url).path) or urlsplit(self.url).query:
            raise OptionError(
                "url", "expected a webhook URL like https://discord.com/api/webhooks/<id>/<token>"
            )
        self.username: str | None = read.str("username", None)
        if self.username is not None:
            if not 1 <= len(self.username) <= USERNAME_LIMIT:
                raise OptionError("username", f"expected 1 to {USERNAME_LIMIT} characters")
            if re.search("discord|clyde", self.username, re.IGNORECASE):
                raise OptionError("username", "Discord refuses names containing discord or clyde")
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        embed: dict[str, Any] = {
            "title": _cut(escape(event.summary), TITLE_LIMIT),
            "description": description(event),
            "url": event.check_url,
            "color": COLORS.get(event.kind, TEST_COLOR),
        }
        if event.flip.at > 0:
            embed["timestamp"] = iso(event.flip.at)
        message: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}
        if self.username is not None:
            message["username"] = self.username
        try:
            await self.request("POST", self.url, params={"wait": "true"}, json=message)
        except NotifyError as e:
            secrets = {"webhook_token": self.url.rpartition("/")[2]}
            raise explained(e, _words, secrets, _wait) from None


def escape(text: str) -> str:
    """Text that Discord's Markdown shows as written: no bold, links, headings or mentions."""
    return MARKDOWN.sub(r"\\\1", text)


def description(event: Event) -> str:
    """The details and the newest output, escaped, at most DESCRIPTION_LIMIT characters."""
    text = escape(details(event))
    # A code block ends at the first ```: break every one in the output with zero-width spaces.
    tail = event.output_tail(DESCRIPTION_LIMIT).strip().replace("```", "`\u200b`\u200b`")
    if not tail:
        return _cut(text, DESCRIPTION_LIMIT)
    frame = len(OUTPUT.format(""))
    # The details get what the output leaves them, and at least half when both are long.
    wanted = frame + len(tail)
    text = _cut(text, DESCRIPTION_LIMIT - min(wanted, DESCRIPTION_LIMIT // 2))
    room = DESCRIPTION_LIMIT - len(text) - frame
    if len(tail) > room:
        tail = "…" + tail[-(room - 1) :]
    return text + OUTPUT.format(tail)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:  # do not leave an escape without its character
        cut = cut[:-1]
    return cut + "…"


def _words(answer: dict[str, Any]) -> object:
    return answer.get("message")


def _wait(answer: dict[str, Any]) -> object:
    return answer.get("retry_after")
