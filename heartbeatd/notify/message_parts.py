"""The pieces of Event.text() for notifiers that lay a message out in parts of their own.

ntfy, Discord, Slack and Telegram show the summary as a title, the job's output in a block of
its own and the check's page as a link or tap target; what is left between is the details.
They are cut out by the summary's and the link's exact text rather than by line, because a
check's name may itself contain line breaks.
"""

from __future__ import annotations

from heartbeatd.notify import Event


def details(event: Event) -> str:
    """Event.text() without its summary, its output and its link: the description, schedule,
    last ping and tags, one a line."""
    text = event.text(body_limit=0)
    return text.removeprefix(event.summary).removesuffix(event.check_url).strip("\n")
