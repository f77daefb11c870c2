"""How much text a check's definition may hold: one set of bounds for every way in.

The config file, the management API, the web form and the CLI all check against these, so a
check one of them takes the others take too. Where Healthchecks has a bound, it is the same
here, so anything Healthchecks accepts is still accepted; where it has none (`desc`,
`channels`) the bound is far above any real use. Without bounds, 640 kB of tags was accepted
through the API and every dashboard render then took 5.6-9.7 s on the event loop, holding
pings back as long.

The validators of core/fields.py (one per check field) apply them; `bounded` raises ValueError
with a message that gives the bound, for the free-text settings that have no field of their own.
"""

from __future__ import annotations

import re

MAX_NAME = 100  # Healthchecks: name, 100 characters
MAX_SLUG = 100  # Healthchecks: slug, 100 characters
# Healthchecks: its tags column, 500 characters. Counted with one space between tags, which
# also bounds how many tags there can be (250) and how long one can be.
MAX_TAGS = 500
MAX_DESC = 10_000  # Healthchecks: unbounded; the web form used to stop at 2,000
MAX_CRON = 100  # Healthchecks: schedule, 100 characters
MAX_KEYWORDS = 200  # Healthchecks: success_kw, failure_kw, start_kw, 200 characters each
MAX_CHANNELS = 10_000  # Healthchecks: unbounded; 270 channel ids, comma-separated
MAX_USER_NAME = 200  # a web UI user's name: the login form, the CLI and the sign-in header
MAX_PASSWORD = 1024  # far above any passphrase; scrypt's input is not ours to make unbounded
# Lowercase letters, digits, '-' and '_'. Always used with fullmatch: `$` after re.match also
# matches before a final newline, which let "abc\n" through as a slug.
SLUG = re.compile(r"[a-z0-9_-]*")


def bounded(text: str, limit: int) -> str:
    """`text`, if it is at most `limit` characters long."""
    if len(text) > limit:
        raise ValueError(f"too long ({len(text)} characters; the limit is {limit})")
    return text
