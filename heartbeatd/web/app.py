"""create_app: the one place that knows every part and wires them together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from heartbeatd.core.clock import Clock, SystemClock
from heartbeatd.core.config import Config
from heartbeatd.core.errors import not_found
from heartbeatd.core.model import label
from heartbeatd.notify import build_notifiers, make_router
from heartbeatd.notify.dispatch import Dispatcher
from heartbeatd.store import Store
from heartbeatd.store.retention import Pruner
from heartbeatd.watch.checks import Checks
from heartbeatd.watch.monitor import Monitor
from heartbeatd.watch.selfmon import SELFMON, SelfMonitor
from heartbeatd.web import badges, ingress, ping, pushgateway, sentry
from heartbeatd.web import prometheus as metrics
from heartbeatd.web.api import handlers as api
from heartbeatd.web.keys import CHECKS, CLOCK, CONFIG, DISPATCHER, MONITOR, STORE, TEMPLATES
from heartbeatd.web.login_limit import LOGIN_THROTTLE, LoginThrottle
from heartbeatd.web.ratelimit import MISS_LIMITER, MissLimiter, limit_misses
from heartbeatd.web.ui import actions as views_actions
from heartbeatd.web.ui import pages as views
from heartbeatd.web.ui.auth import PASSWORDS, Passwords

if TYPE_CHECKING:
    from heartbeatd.web.smtp import Listener

log = logging.getLogger("heartbeatd")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",  # a ping body served as text stays text
    "Content-Security-Policy": "frame-ancestors 'none'",  # no page of ours inside another site
    "X-Frame-Options": "DENY",  # the same, for browsers without CSP's frame-ancestors
    "Referrer-Policy": "same-origin",  # page addresses name checks: keep them on this site
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries them, pings too: a few bytes, and no route can forget them."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def load_checks(store: Store, config: Config, now: float) -> None:
    """Bring the database's checks in line with the config file, saying what changed, and
    warn of patterns saved before heartbeatd used RE2 that it cannot run (rules/regex.py)."""
    for change in await store.reconcile(config.checks, now):
        log.info("%s", change)
    for check in await store.list_checks():
        for key, why in check.rules.body.refused() if check.rules.body else ():
            log.warning("check %s: %s is not run until replaced: %s", label(check), key, why)


def create_app(
    config: Config, clock: Clock | None = None, passwords: Passwords | None = None
) -> web.Application:
    """The whole daemon as an aiohttp app; tests build it the same way with a ManualClock
    (and, where they log in often, Passwords of a lower cost than the production one)."""
    app = web.Application(middlewares=[limit_misses])  # 404 guesses: see ratelimit.py
    app[MISS_LIMITER] = MissLimiter()
    app[LOGIN_THROTTLE] = LoginThrottle()
    app[sentry.MANAGED_NOTED] = set()
    app[PASSWORDS] = passwords or Passwords()
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("heartbeatd.web.ui", "templates"), autoescape=True
    )
    notifiers = build_notifiers(config)  # config mistakes surface before anything starts
    store = Store(config.db, config.ping_retention, lambda: external_change())
    store.router = make_router(config)
    store.silences = config.silences
    policies = {spec.name: spec for spec in config.notifiers}
    dispatcher = Dispatcher(store, notifiers, app[CLOCK], config.site_url, policies)
    watch_late = any("late" in spec.events for spec in config.notifiers)
    monitor = Monitor(store, app[CLOCK], config.startup_grace, dispatcher.wake, watch_late)

    def external_change() -> None:
        """The CLI committed: deadlines may have moved, a snooze may have ended early."""
        monitor.request_resync()
        dispatcher.wake()

    app[STORE], app[MONITOR], app[DISPATCHER] = store, monitor, dispatcher
    app[CHECKS] = Checks(store, monitor, dispatcher.wake, app[CLOCK])
    selfmon = app[SELFMON] = SelfMonitor(
        store, app[CLOCK], config.self_ping_url, config.self_ping_interval
    )
    app[metrics.STATS] = metrics.Stats(started=app[CLOCK].now())
    pruner = Pruner(store, app[CLOCK], config.audit_retention, config.history_retention)
    smtp = smtp_listener(app) if config.smtp_listen else None

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        if smtp is not None:
            await smtp.bind()
        await store.open()
        await load_checks(store, config, app[CLOCK].now())
        dispatcher.heartbeatd_down = await selfmon.start()
        await monitor.start()
        dispatcher.start()
        pruner.start()
        if smtp is not None:
            await smtp.serve()
        log.info("watching %d checks; database %s", len(monitor), config.db)
        yield
        if smtp is not None:
            await smtp.stop()
        await pruner.stop()
        await monitor.stop()
        await dispatcher.stop()
        await selfmon.stop()
        await store.close()
        log.info("stopped; database closed")

    app.cleanup_ctx.append(lifetime)
    app.on_response_prepare.append(add_security_headers)
    app.add_routes(ping.routes)
    app.add_routes(views.routes)
    app.add_routes(views_actions.routes)
    app.add_routes(badges.routes)
    app.router.add_static("/static", Path(__file__).parent / "ui" / "static")
    app.add_routes(ingress.routes)
    app.add_routes(pushgateway.routes)
    app.add_routes(sentry.routes)
    app.add_routes(metrics.routes)
    app.add_routes(api.routes)
    app.router.add_route("*", "/{tail:.*}", not_found)  # last: only what nothing else claims
    return app


def smtp_listener(app: web.Application) -> Listener:
    """The listener for e-mailed pings; imported only when smtp_listen asks for it, as it
    needs aiosmtpd, an optional extra."""
    from heartbeatd.web import smtp

    listener = app[smtp.LISTENER] = smtp.Listener(app)
    return listener
