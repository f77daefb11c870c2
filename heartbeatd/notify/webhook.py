"""The `webhook` notifier: an HTTP request per event, JSON by default or from templates.

Without templates it POSTs Event.as_dict() as JSON. `body_down` / `body_up` replace the body
with text in which `$name`, `$slug`, `$uuid`, `$status`, `$tags`, `$summary`, `$body`,
`$exit_status`, `$duration`, `$time`, `$event` and `$url` are filled in (string.Template
syntax: `${name}` works too, `$$` is a dollar). Each value is encoded for where it lands, so
that it stays one value whatever a check is named: percent-encoded in the URL and in a form body
(Content-Type application/x-www-form-urlencoded: a check named `a&status=up` must not add a
field), JSON-escaped in a JSON body (a Content-Type naming json, or a template that starts with
{ or [), as written in any other body. Healthchecks percent-encodes in URLs too, but leaves `/`
as is and fills bodies in raw. With `secret`, the body is signed:
X-Heartbeatd-Signature: sha256=<hex HMAC>.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from string import Template
from urllib.parse import quote, quote_plus

from heartbeatd.notify import Event, iso
from heartbeatd.notify.http import HttpNotifier
from heartbeatd.notify.options import OptionError, Options

SIGNATURE_HEADER = "X-Heartbeatd-Signature"
FORM = "application/x-www-form-urlencoded"

Encoder = Callable[[str], str]  # how a value is written where its placeholder is


class WebhookNotifier(HttpNotifier):
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("webhook", options)
        self.name = name
        self.url = Template(read.url("url"))
        self.url_fields = frozenset(self.url.get_identifiers())
        self.method = read.choice("method", ("POST", "PUT", "PATCH", "GET"), "POST")
        self.limit = read.duration("timeout", 10.0)
        self.headers: dict[str, str] = read.str_dict("headers", {})
        self.templates = {
            kind: (template, self._encoder(template))
            for kind, template in (
                ("down", _template(read, "body_down")),
                ("up", _template(read, "body_up")),
            )
            if template is not None
        }
        self.secret: str | None = read.str("secret", None)
        read.done()

    async def send(self, event: Event) -> None:
        filled = self.templates.get(event.kind)
        # Filled in only where used: quoting a 10 kB output tail for a URL that does not
        # name it was a fifth of a send's cost in an alert storm.
        values = placeholders(event) if filled is not None or self.url_fields else {}
        url = self.url.safe_substitute(
            {k: quote(values[k], safe="") for k in self.url_fields & values.keys()}
        )
        headers = dict(self.headers)
        if filled is None:
            body = json.dumps(event.as_dict()).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            template, encode = filled
            body = template.safe_substitute({k: encode(v) for k, v in values.items()}).encode()
        if self.secret is not None:
            digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        data = None if self.method == "GET" else body
        await self.request(self.method, url, data=data, headers=headers)

    def _encoder(self, template: Template) -> Encoder:
        """How values are written into this body: what its receiver will parse it as."""
        content_type = next((v for k, v in self.headers.items() if k.lower() == "content-type"), "")
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type == FORM:
            return _form_value
        if "json" in media_type or template.template.lstrip()[:1] in ("{", "["):
            return _json_string
        return str


def _form_value(value: str) -> str:
    return quote_plus(value, safe="")


def _json_string(value: str) -> str:
    return json.dumps(value)[1:-1]


def _template(read: Options, key: str) -> Template | None:
    text = read.str(key, None)
    if text is None:
        return None
    template = Template(text)
    if not template.is_valid():
        raise OptionError(key, "a '$' must start a placeholder like $name or be written $$")
    return template


def placeholders(event: Event) -> dict[str, str]:
    check = event.check
    duration = check.last_duration
    return {
        "event": event.kind,
        "name": check.name,
        "slug": check.slug,
        "uuid": check.uuid,
        "status": str(event.flip.new),
        "tags": check.tags,
        "summary": event.summary,
        "body": event.output_tail(10_000),
        "exit_status": "" if event.exit_status is None else str(event.exit_status),
        "duration": "" if duration is None else f"{duration:.3f}",
        "time": iso(event.flip.at) or "",
        "url": event.check_url,
    }
