"""The baseline: a bare aiohttp server answering "OK" on the same URLs, doing nothing else.

It is the ceiling for our stack on this machine; ping_throughput.py quotes heartbeatd as a ratio
of it, measured in the same run, so the figure means the same on a slower or faster box.
"""

from __future__ import annotations

import os

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="OK")


def main() -> None:
    host, _, port = os.environ.get("HEARTBEATD_LISTEN", "127.0.0.1:8001").rpartition(":")
    app = web.Application()
    app.router.add_route("*", "/ping/{tail:.*}", ok)
    web.run_app(app, host=host, port=int(port), access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
