"""Typed application state (aiohttp AppKeys): what handlers may reach, named once."""

from __future__ import annotations

import jinja2
from aiohttp import web

from heartbeatd.core.clock import Clock
from heartbeatd.core.config import Config
from heartbeatd.notify.dispatch import Dispatcher
from heartbeatd.store import Store
from heartbeatd.watch.checks import Checks
from heartbeatd.watch.monitor import Monitor

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
MONITOR = web.AppKey("monitor", Monitor)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CHECKS = web.AppKey("checks", Checks)  # every write to a check: write, arm, wake
TEMPLATES = web.AppKey("templates", jinja2.Environment)
