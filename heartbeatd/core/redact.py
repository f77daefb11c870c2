"""What a message may show of a value that may be a secret.

Config errors, logs and the outbox's `error` column (shown on the status page and by the API)
reach more people than the config file does: a CI log, a screenshot in an issue. Notifier URLs
carry their secret in the path or query (Slack, Discord, Telegram, most webhooks) or as
userinfo, tokens and passwords are secrets whole. So a message shows a URL as its scheme and
host only, and any other mistyped value only as the kind of value it is (a PIN is a number).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")


def host(url: str) -> str:
    """The URL's host (and port), without the userinfo that may come before it."""
    return urlsplit(url).netloc.rpartition("@")[2]


def shown_url(value: str) -> str:
    """`'https://hooks.slack.com/…'`: the scheme and host; the rest may be a secret."""
    try:
        parts = urlsplit(value)
        where = host(value)
    except ValueError:
        return "a URL with a broken [IPv6] host"
    if not SCHEME.fullmatch(parts.scheme):
        return "a string without a scheme like https://"
    if not where:
        return "a URL without a host"
    shown = f"{parts.scheme}://{where}"
    return repr(shown if value.rstrip("/") == shown else f"{shown}/…")


def kind_of(value: object) -> str:
    """A value as an error may show it: true and false as written, others by their kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # TOML's dates and times
