"""The status page: every check and its state, server-rendered (the full UI is issue #4)."""

from __future__ import annotations

from aiohttp import web

from heartbeatd.errors import plain_errors
from heartbeatd.model import status_at
from heartbeatd.notify import iso
from heartbeatd.schedule import describe
from heartbeatd.web_keys import CLOCK, CONFIG, STORE, TEMPLATES

routes = web.RouteTableDef()

ORDER = {"down": 0, "grace": 1, "started": 2, "up": 3, "new": 4, "paused": 5}


@routes.get("/")
@plain_errors
async def dashboard(request: web.Request) -> web.Response:
    app = request.app
    now = app[CLOCK].now()
    rows = []
    for check in await app[STORE].list_checks():
        status = status_at(check, now)
        rows.append(
            {
                "name": check.name,
                "slug": check.slug,
                "tags": check.tags.split(),
                "status": "late" if status == "grace" else str(status),
                "order": ORDER[status],
                "schedule": describe(check.schedule),
                "last_ping": iso(check.last_ping),
                "managed": check.managed,
            }
        )
    rows.sort(key=lambda r: (r["order"], r["name"]))
    html = (
        app[TEMPLATES]
        .get_template("dashboard.html")
        .render(checks=rows, site_url=app[CONFIG].site_url)
    )
    return web.Response(text=html, content_type="text/html")
