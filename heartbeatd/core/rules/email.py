"""An e-mailed ping judged by its subject and text, as Healthchecks' smtpd judges it.

With `filter_subject` the Subject (its encoded words decoded) is searched, with `filter_body` the
message's text: its first text/plain part and its first text/html part with the tags dropped,
the attachments passed over; both on, the subject then the text. The keywords, their order
and `filter_default_fail` are the body rules' (body.py), so a message that matches none is
ignored, as in Healthchecks. Without either switch an e-mail is a success whatever it says.

Python's e-mail parsing is not linear in every header (a 400 kB subject of encoded words took
17 s to decode, a 30 kB Content-Type 1.2 s under the SMTP policy), so the work is bounded
here, not by the body limit (which may be 10 MB): only the first JUDGED_BYTES of a message
are read, with the compat32 parser (linear in what it is given), the Subject is cut to
MAX_SUBJECT characters before decoding, and HTML is reduced to text in one pass of str.find
(html.parser took 3 s on 100 kB of unclosed comments). A message nested too deep to parse is
judged by its headers alone.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.parser
from dataclasses import dataclass
from email.message import Message
from html import unescape

from heartbeatd.core.rules.body import BodyRules

JUDGED_BYTES = 128_000  # of a message, read for its subject and text (~0.1 s at worst)
MAX_SUBJECT = 2_000  # characters of a raw Subject decoded; RFC 5322 lines stop at 998
SKIPPED_ELEMENTS = ("script", "style")  # HTML whose content is not text a person reads


@dataclass(frozen=True, slots=True)
class MessageText:
    """What the e-mail filters may search in a message, read once for all its recipients."""

    subject: str
    text: str  # the plain part, then the HTML part as text


def read_message(data: bytes) -> MessageText:
    """The subject and text of a raw message (RFC 5322 bytes, as SMTP's DATA carries it)."""
    head = data[:JUDGED_BYTES]
    try:
        message = email.message_from_bytes(head)
    except RecursionError:  # multiparts nested about a thousand deep
        message = email.parser.BytesHeaderParser().parsebytes(head)
    return MessageText(_subject(message), "\n".join(_texts(message)))


def decide(rules: BodyRules, message: MessageText) -> tuple[str, str]:
    """(action, why) for an e-mailed ping to a check whose rules judge e-mail (rules.email)."""
    chunks = ([message.subject] if rules.subject else []) + (
        [message.text] if rules.email_body else []
    )
    where = "subject" if not rules.email_body else "e-mail"
    return rules.decide_text("\n".join(chunks), where)


def _subject(message: Message) -> str:
    raw = message.get("subject")
    if raw is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(raw)[:MAX_SUBJECT])))
    except (LookupError, UnicodeError, email.errors.HeaderParseError):  # a charset or word
        return str(raw)[:MAX_SUBJECT]


def _texts(message: Message) -> list[str]:
    """The first text/plain and the first text/html part that are not attachments, as text:
    the parts email.message.EmailMessage.get_body picks, found without recursion."""
    found: dict[str, str] = {}
    stack = [message]
    while stack and len(found) < 2:
        part = stack.pop()
        if part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html"):
            if kind not in found:
                found[kind] = _decoded(part)
        elif part.is_multipart():
            subparts = [p for p in part.get_payload() if isinstance(p, Message)]
            if kind == "multipart/related":  # its first part is the body, the rest its images
                subparts = subparts[:1]
            stack.extend(reversed(subparts))
    texts = [found.get("text/plain", "")]
    if "text/html" in found:
        texts.append(html_text(found["text/html"]))
    return [text for text in texts if text]


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", "replace")


def html_text(document: str) -> str:
    """The words of an HTML document, its tags, comments, scripts and styles dropped, in one
    pass: `<b>S</b>UCCESS` reads SUCCESS, as Healthchecks' html2text reads it."""
    lowered = document.lower()
    out: list[str] = []
    at = 0
    while True:
        start = document.find("<", at)
        if start < 0:
            out.append(document[at:])
            break
        out.append(document[at:start])
        if document.startswith("<!--", start):
            end = document.find("-->", start + 4)
            at = len(document) if end < 0 else end + 3
            continue
        end = document.find(">", start)
        if end < 0:
            break
        at = end + 1
        name = (lowered[start + 1 : end].split(maxsplit=1) or [""])[0]
        if name in SKIPPED_ELEMENTS:
            close = lowered.find(f"</{name}", at)
            at = len(document) if close < 0 else close
    return " ".join(unescape("".join(out)).split())
