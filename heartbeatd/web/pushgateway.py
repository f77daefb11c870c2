"""Prometheus Pushgateway pushes, so a batch job that pushes its results is watched unchanged.

prometheus_client's `push_to_gateway("<host>/pushgateway/<ping-key>", job="nightly-backup",
registry=r)` PUTs to /pushgateway/<ping-key>/metrics/job/nightly-backup[/<label>/<value>...]
(`pushadd_to_gateway` POSTs, `delete_from_gateway` DELETEs). The job is the slug of a check
under the instance ping key, as in /ping/<ping-key>/<slug>; the other labels of the grouping key
are checked for form and otherwise ignored. A push is a ping recorded by ping.accept: a success,
or a failure when its samples say so (push_action); the pushed text is the ping's body, and its
samples are the ping's metrics, for `[check.assert]`. A DELETE is answered 202 and records
nothing: it cleans up after a job, it is no sign of one. Answers are the Pushgateway's: 200 for
a push, 202 for a delete.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from urllib.parse import unquote

from aiohttp import web

from heartbeatd.core.errors import BadRequest, NotFound, plain_errors
from heartbeatd.core.rules import metrics as ping_metrics
from heartbeatd.store import BySlug
from heartbeatd.web.keys import CONFIG, STORE
from heartbeatd.web.ping import accept, by_slug, ping_in, read_body

routes = web.RouteTableDef()

PUSH_PATH = "/pushgateway/{key}/metrics/{grouping_key:.*}"
PARSE_LIMIT = 64 * 1024  # a push is read this far for its samples, whatever the body limit
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's client pushes protobuf unless told `.Format(expfmt.NewFormat(expfmt.TypeTextPlain))`:
# such a push is a success ping, its samples unread.
PROTOBUF = "application/vnd.google.protobuf"
PROTOBUF_NOTE = "protobuf push: its samples are not read; push the text format for them"


def push_target(request: web.Request) -> BySlug:
    """The check a push is for: its path's ping key and job, as the client encoded them.

    Read from the raw path: a value may hold an escaped "/", which aiohttp would decode
    before the path is split into labels and values.
    """
    _, _, key, _, *labels = request.rel_url.raw_path.split("/")
    job = grouping_key(labels)["job"]
    return by_slug(unquote(key), job, request.app[CONFIG].pushgateway_create)


def grouping_key(parts: list[str]) -> dict[str, str]:
    """`job/<job>/<label>/<value>...` as labels; a value after `<label>@base64` is URL-safe
    base64, padded or not (`=` alone is the empty value). BadRequest when it is no such path."""
    if len(parts) % 2 or parts[0] not in ("job", "job@base64"):
        raise BadRequest("invalid url format")
    labels = {}
    for name, value in zip(parts[::2], parts[1::2], strict=True):
        label, encoded, _ = name.partition("@base64")
        if not LABEL_NAME.fullmatch(label) or (encoded and name != f"{label}@base64"):
            raise BadRequest("invalid url format")
        labels[label] = from_base64(value) if encoded else unquote(value)
    return labels


def from_base64(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "==").decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid base64 encoding in url") from None


def push_action(samples: tuple[tuple[str, float], ...]) -> tuple[str, str]:
    """("fail", why) if a sample named `<anything>_failed` is not 0 or one named
    `<anything>_success` is 0 (`job_failed 1`, `backup_success 0`), else ("success", "")."""
    for name, value in samples:
        if (name.endswith("_failed") and value != 0) or (name.endswith("_success") and value == 0):
            return "fail", f"pushed {name} {value:g}: a failure"
    return "success", ""


def whole_lines(data: bytes, size: int) -> str:
    """The text of `data` without its last line if the body was cut inside it: the cut-off
    `backup_bytes 52` of `backup_bytes 5200` must not be read as a sample."""
    if len(data) < size:
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", "replace")


@routes.route("PUT", PUSH_PATH)
@routes.route("POST", PUSH_PATH)
@plain_errors
async def push(request: web.Request) -> web.Response:
    """A job's results (PUT replaces its group, POST adds to it: both are one ping here)."""
    target = push_target(request)
    limit = request.app[CONFIG].ping_body_limit
    data, size = await read_body(request, target, max(limit, PARSE_LIMIT))
    if request.content_type == PROTOBUF:
        pushed = ping_metrics.Exposition({}, [PROTOBUF_NOTE], ())
    else:
        pushed = ping_metrics.from_prometheus(whole_lines(data, size))
    action, why = push_action(pushed.samples)
    incoming = ping_in(request, action, None, None, data[:limit], size)
    notes = (why,) if why else ()
    metrics = tuple(pushed.metrics.items())
    await accept(request, target, replace(incoming, metrics=metrics, notes=(*notes, *pushed.notes)))
    return web.Response()


@routes.route("DELETE", PUSH_PATH)
@plain_errors
async def delete(request: web.Request) -> web.Response:
    """202 as the Pushgateway answers it, 404 for a check nobody could push to."""
    if not await request.app[STORE].knows(push_target(request)):
        raise NotFound()
    return web.Response(status=202)
