"""Letting the body decide: Healthchecks' keyword filters and their regular-expression form.

A job that pipes its log into the ping can be judged by it (PROTOCOL.md §1.5): a failure
keyword makes the ping a failure whatever the URL said, then a success keyword a success, then
a start keyword a start; with none matching, `filter_default_fail` makes it a failure and
otherwise it is ignored. Keywords are comma-separated, case-sensitive substrings, as in
Healthchecks; the `_re` forms are regular expressions (RE2, user_regex.py) searched for in the
body, tried after the keywords of the same kind.

As in Healthchecks, one set of keywords serves three switches, each naming what it judges:
`filter_http_body` an HTTP ping's body, `filter_subject` and `filter_body` an e-mailed
ping's subject and text (email.py). A switch that is off leaves its pings to their URL (or,
for e-mail, to be successes).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from heartbeatd.core.limits import MAX_KEYWORDS, bounded
from heartbeatd.core.rules.regex import RegexError, UserRegex, compile_regex, load_stored

KINDS = ("failure", "success", "start")  # in the order they are tried
KIND_ACTIONS = {"failure": "fail", "success": "success", "start": "start"}
KEYS = (
    "filter_http_body", "filter_subject", "filter_body", "success_kw", "failure_kw", "start_kw",
    "success_re", "failure_re", "start_re", "filter_default_fail",
)  # fmt: skip
EMAIL_SWITCHES = ("filter_subject", "filter_body")
SWITCHES = ("filter_http_body", *EMAIL_SWITCHES)  # what the keywords judge: see above
PATTERN_KEYS = tuple(f"{kind}_re" for kind in KINDS)


class BodyRuleError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class BodyRules:
    keywords: Mapping[str, tuple[str, ...]]  # kind -> keywords
    patterns: Mapping[str, UserRegex]  # kind -> compiled `_re`
    default_fail: bool = False
    http: bool = True  # filter_http_body: they judge HTTP pings' bodies
    subject: bool = False  # filter_subject: they judge an e-mail's subject
    email_body: bool = False  # filter_body: they judge an e-mail's text

    @property
    def email(self) -> bool:
        """Whether they judge e-mailed pings (email.py)."""
        return self.subject or self.email_body

    def decide(self, body: bytes) -> tuple[str, str]:
        """(action, why) for a ping with this body; why names what matched, and any pattern
        passed over because RE2 refuses it (see `refused`)."""
        return self.decide_text(body.decode("utf-8", "replace"), "body")

    def decide_text(self, text: str, where: str) -> tuple[str, str]:
        """(action, why) for `text`, which `where` names in the why ("body", "subject")."""
        skipped = ""
        for kind in KINDS:
            for keyword in self.keywords.get(kind, ()):
                if keyword in text:
                    return KIND_ACTIONS[kind], f"{kind} keyword {keyword!r} in the {where}{skipped}"
            pattern = self.patterns.get(kind)
            if pattern is not None and pattern.refused:
                skipped += f"; {kind}_re {pattern.pattern!r} not run: RE2 refuses it"
            elif pattern is not None and pattern.search(text):
                matched = f"{where} matches {kind}_re {pattern.pattern!r}{skipped}"
                return KIND_ACTIONS[kind], matched
        if self.default_fail:
            return "fail", f"no keyword in the {where} (filter_default_fail){skipped}"
        return "ign", f"no keyword in the {where}{skipped}"

    @property
    def searches(self) -> bool:
        """Whether deciding runs a regular expression (store.py runs those off the loop)."""
        return any(not pattern.refused for pattern in self.patterns.values())

    def refused(self) -> list[tuple[str, str]]:
        """(key, why) for each stored pattern RE2 cannot run: it matches nothing until replaced."""
        return [(f"{kind}_re", p.refused) for kind, p in self.patterns.items() if p.refused]

    def as_config(self) -> dict[str, object]:
        """The config keys that build these rules again (how they are stored)."""
        found: dict[str, object] = {"filter_http_body": self.http}
        if self.email:
            found.update(filter_subject=self.subject, filter_body=self.email_body)
        for kind, words in self.keywords.items():
            found[f"{kind}_kw"] = ",".join(words)
        for kind, pattern in self.patterns.items():
            found[f"{kind}_re"] = pattern.pattern
        if self.default_fail:
            found["filter_default_fail"] = True
        return found


def from_config(table: Mapping[str, object], stored: Collection[str] = ()) -> BodyRules | None:
    """The body rules of a check table; None when neither a body nor an e-mail decides.

    Setting any keyword turns HTTP body filtering on, unless an e-mail switch is on (then it
    is off unless said); `filter_http_body = false` turns it off again while keeping
    the keywords written down, as Healthchecks' switch does. `stored` names the keys read back
    from the database rather than given now: a pattern there that RE2 cannot run loads as
    refused instead of failing (user_regex.load_stored).
    """
    given = [key for key in KEYS if key in table]
    if not given:
        return None
    subject = _flag(table, "filter_subject", False)
    email_body = _flag(table, "filter_body", False)
    http = _flag(table, "filter_http_body", not (subject or email_body))
    keywords = {kind: _keywords(table, f"{kind}_kw") for kind in KINDS}
    patterns = {kind: _pattern(table, f"{kind}_re", f"{kind}_re" in stored) for kind in KINDS}
    default_fail = _flag(table, "filter_default_fail", False)
    if not (http or subject or email_body):
        return None
    return BodyRules(
        {kind: words for kind, words in keywords.items() if words},
        {kind: pattern for kind, pattern in patterns.items() if pattern is not None},
        default_fail,
        http,
        subject,
        email_body,
    )


def check_bounds(rules: BodyRules) -> None:
    """BodyRuleError if a keyword or pattern key holds more than MAX_KEYWORDS characters as
    stored (keywords comma-separated). Checked on rules coming in, never on stored ones read
    back: a check saved before the bound must still load."""
    for key, value in rules.as_config().items():
        if isinstance(value, str):
            try:
                bounded(value, MAX_KEYWORDS)
            except ValueError as e:
                raise BodyRuleError(key, str(e)) from None


def _flag(table: Mapping[str, object], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise BodyRuleError(key, f"expected true or false, got {value!r}")
    return value


def _keywords(table: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = table.get(key, "")
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise BodyRuleError(key, f"expected comma-separated keywords or a list, got {value!r}")
    return tuple(word.strip() for word in items if word.strip())


def _pattern(table: Mapping[str, object], key: str, stored: bool) -> UserRegex | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BodyRuleError(key, f"expected a regular expression as a string, got {value!r}")
    if stored:
        return load_stored(value)
    try:
        return compile_regex(value)
    except RegexError as e:
        raise BodyRuleError(key, str(e)) from None
