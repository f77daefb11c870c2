"""How `heartbeatd serve` holds its HTTP connections: the aiohttp runner and its limits.

aiohttp waits for a request's headers with no limit of its own beyond the keep-alive timeout,
which by default is an hour: a client sending a byte a second (slowloris) kept its connection,
and its file descriptor, that long. aiohttp arms the keep-alive timer when a connection opens and
again after each response, and closes the connection if it fires while no complete request has
arrived; so it bounds both the wait for headers and the idle time between requests. It never
fires while a handler runs: bodies have their own pace (bodies.py).

A handler that answers before reading the body (404 for an unknown ping token, 401 for a
wrong API key) leaves the rest of it on the connection. aiohttp never parses it as the next
request: it reads and drops it for up to LINGER seconds, keeps the connection if it ends in
that time and closes it otherwise (and after a 408, whose answer says Connection: close).
"""

from __future__ import annotations

from aiohttp import web

# How long a connection may go without a complete request head (its first, or the next on a
# kept-alive connection). uvicorn idles 5 s, gunicorn 2 s behind their proxies; 30 s leaves a
# slow client on a bad link room to send a few hundred bytes of headers.
HEADER_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0  # how long in-flight requests may run on after SIGTERM
# How long an unread body is drained after the answer. Closing at once would have the kernel
# reset a client still sending, which can lose it the answer; aiohttp's 10 s default let a
# trickle to a guessed URL hold the connection that long. 5 s drains a 100 kB ping body at
# 160 kbit/s or a 1 MB API body at 1.6 Mbit/s.
LINGER = 5.0


def make_runner(app: web.Application, header_timeout: float = HEADER_TIMEOUT) -> web.AppRunner:
    """The runner `heartbeatd serve` starts its sites on."""
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=header_timeout,
        lingering_time=LINGER,
    )
