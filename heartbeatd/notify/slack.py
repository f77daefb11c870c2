"""The `slack` notifier: a message in a Slack channel, through an incoming webhook.

One JSON POST per event to the webhook URL, with Block Kit blocks (a header with the summary,
the details, the end of the job's output in a code block, a link to the check's page) and a
`text` that Slack shows in notifications and where blocks cannot be shown.

In Slack's mrkdwn, `<...>` is markup: `<!channel>` pings everyone, `<https://x|label>` is a
link. Every piece of check data has &, < and > escaped as Slack requires, so a check named
`<!channel>` reads as written and pings nobody; the header is plain_text, which Slack never
parses. Slack answers 200 "ok"; its 4xx answers (invalid_payload, invalid_token, no_service,
channel_not_found, channel_is_archived, action_prohibited) will not change on retry and fail
for good, 429 and 5xx are retried. The webhook's secret is in the URL's path, so errors name
only the host.

Options:
  url      the incoming webhook's URL (required), https://hooks.slack.com/services/T.../B.../...
  timeout  default 10s
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heartbeatd.notify import Event
from heartbeatd.notify.http import HttpNotifier
from heartbeatd.notify.message_parts import details
from heartbeatd.notify.options import Options

HEADER_LIMIT = 150  # characters of a header block's plain_text
SECTION_LIMIT = 3000  # characters of a section block's text
OUTPUT = "*Last output:*\n```{}```"
EMOJI = {
    "down": ":red_circle:",
    "repeat": ":red_circle:",
    "late": ":warning:",
    "up": ":large_green_circle:",
}


class SlackNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("slack", options)
        self.name = name
        self.url: str = read.url("url")
        self.limit = read.duration("timeout", 10.0)
        read.done()

    async def send(self, event: Event) -> None:
        await self.request("POST", self.url, json=payload(event))


def payload(event: Event) -> dict[str, Any]:
    """The webhook's JSON: a notification text and the blocks, every piece of data escaped."""
    summary = event.summary
    emoji = EMOJI.get(event.kind, ":bell:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(summary, HEADER_LIMIT)}},
        _section(_cut(escape(details(event)), SECTION_LIMIT)),
    ]
    tail = event.output_tail(SECTION_LIMIT).strip()
    if tail:
        # A code block ends at the first ```: break every one in the output with zero-width spaces.
        tail = tail.replace("```", "`\u200b`\u200b`")
        blocks.append(
            _section(OUTPUT.format(_escaped_end(tail, SECTION_LIMIT - len(OUTPUT.format("")))))
        )
    blocks.append(_section(f"<{escape(event.check_url)}|Open the check in heartbeatd>"))
    return {
        "text": f"{emoji} {escape(summary)}",
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def escape(text: str) -> str:
    """Slack's escaping for text in mrkdwn: these three characters and nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped_end(text: str, budget: int) -> str:
    """The escaped end of `text`, with '…' when cut, at most `budget` characters long."""
    escaped = escape(text)
    if len(escaped) <= budget:
        return escaped
    pieces, used = [], 1
    for char in reversed(text):
        piece = escape(char)
        used += len(piece)
        if used > budget:
            break
        pieces.append(piece)
    return "…" + "".join(reversed(pieces))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    entity = cut.rfind("&")  # do not leave half an escape like "&am"
    if entity != -1 and ";" not in cut[entity:]:
        cut = cut[:entity]
    return cut + "…"
