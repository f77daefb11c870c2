"""Who may read what without a key: the one place that decides what a request is.

heartbeatd is usually reached through a reverse proxy that connects from 127.0.0.1, so a
loopback peer proves nothing by itself: it is taken as "a person on this machine" only when the
config names no proxy and no public site URL, and the request shows no sign of having been
relayed (a forwarding header, or a Host that is not this machine's: a DNS-rebinding page in a
local browser sends its own name). Anything else must log in, present a key, or be let in by
the config (`[ui] public`, `metrics_public`).

Three kinds of reader:
- a *local* visitor reads everything but changes nothing without logging in (the first five
  minutes: `heartbeatd serve`, then open http://127.0.0.1:8000);
- an anonymous visitor of a `[ui] public = true` page, and a logged-in *viewer*, read statuses
  but not ping URLs: a ping URL is a credential, whoever has it can silence a check;
- an *admin* reads and changes everything.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from heartbeatd.core.config import Config, split_listen
from heartbeatd.web.keys import CONFIG

# Headers a proxy adds; a request carrying one came through something, whatever its peer.
FORWARDING_HEADERS = (
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
    "Via", "CF-Connecting-IP", "True-Client-IP",
)  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, without port) is this machine's own."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_only(config: Config) -> bool:
    """Whether the config says only this machine reaches the daemon: loopback listen, no
    trusted proxy, and a site URL (what links and ping URLs are built on) on loopback too."""
    site_host = urlsplit(config.site_url).hostname or ""
    return not config.trusted_proxies and is_loopback(config.host) and is_loopback(site_host)


def is_local(request: web.Request) -> bool:
    """Whether only a person on this machine can have sent `request` (see the module doc)."""
    if not local_only(request.app[CONFIG]) or not is_loopback(request.remote or ""):
        return False
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    host = request.headers.get("Host", "")
    return is_loopback(split_host(host))


def split_host(host: str) -> str:
    """The name in a Host header, without its port (`[::1]:8000` → `::1`)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def anyone_may_read(request: web.Request) -> bool:
    """Whether the status page is shown without logging in: `[ui] public`, or, unset, a
    local visitor."""
    public = request.app[CONFIG].ui_public
    return public if public is not None else is_local(request)


def summary(config: Config) -> str:
    """One line for the log at start: what each kind of URL lets in, so an operator sees at
    a glance what a stranger reaching the port would get."""
    if config.ui_public:
        page = "public read-only (no ping URLs)"
    elif config.ui_public is None and local_only(config):
        page = "local visitors read it, others log in"
    else:
        page = "login required"
    signin = "password"
    if config.ui_trusted_header:
        proxies = ", ".join(str(n) for n in config.trusted_proxies)
        signin += f" or header {config.ui_trusted_header} from {proxies}"
    if config.metrics_key:
        metrics = "bearer key"
    elif config.metrics_public:
        metrics = "public"
    else:
        metrics = "local only" if local_only(config) else "closed (set metrics_key)"
    host, port = split_listen(config.listen)
    return (
        f"exposure on {host}:{port}: pings public by token; status page {page}; "
        f"sign-in {signin}; API by key; /metrics {metrics}"
    )
