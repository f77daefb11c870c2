"""Leaks and injections through what heartbeatd writes for others: webhooks, badges, errors.

Holes proved closed here:
- a check's name filled raw into a form-encoded webhook body added fields of its own choosing
  (a check named `a&status=up` turned a down alert into an up one for the receiver).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.conftest import eventually

# -- webhook templates ------------------------------------------------------------------------

INJECTING_NAME = "a&status=up +%41é"


async def test_a_check_name_cannot_add_fields_to_a_form_webhook(
    start_daemon: Any, aiohttp_server: Any
) -> None:
    forms: list[list[tuple[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        forms.append(parse_qsl(await request.text(), keep_blank_values=True, strict_parsing=True))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await aiohttp_server(app)
    daemon = await start_daemon(f"""
[[notifier]]
name = "hook"
type = "webhook"
url = "{server.make_url("/hook")}"
default = true
headers = {{ "Content-Type" = "application/x-www-form-urlencoded; charset=utf-8" }}
body_down = "name=$name&status=$status"
""")
    check = await daemon.add(INJECTING_NAME, slug="a", period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: forms)
    assert forms[0] == [("name", INJECTING_NAME), ("status", "down")]
