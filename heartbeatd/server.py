"""How `heartbeatd serve` holds its HTTP connections: the aiohttp runner and its limits.

aiohttp waits for a request's headers with no limit of its own beyond the keep-alive timeout,
which by default is an hour: a client sending a byte a second (slowloris) kept its connection,
and its file descriptor, that long. aiohttp arms the keep-alive timer when a connection opens and
again after each response, and closes the connection if it fires while no complete request has
arrived; so it bounds both the wait for headers and the idle time between requests. It never
fires while a handler runs, so a slow body (a ping trickling in) is not cut off.
"""

from __future__ import annotations

from aiohttp import web

# How long a connection may go without a complete request head (its first, or the next on a
# kept-alive connection). uvicorn idles 5 s, gunicorn 2 s behind their proxies; 30 s leaves a
# slow client on a bad link room to send a few hundred bytes of headers.
HEADER_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0  # how long in-flight requests may run on after SIGTERM


def make_runner(app: web.Application, header_timeout: float = HEADER_TIMEOUT) -> web.AppRunner:
    """The runner `heartbeatd serve` starts its sites on."""
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=header_timeout,
    )
