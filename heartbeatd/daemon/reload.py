"""SIGHUP: re-read the config file and apply it without a restart, so no ping is refused.

Checks, notifiers and silences are applied in place: the `[[check]]` tables are reconciled
(UUIDs stay, changed schedules re-arm), notifiers are rebuilt and swapped into the dispatcher,
routing follows, held alerts are settled by the new `[[silence]]` windows. A file with a mistake
changes nothing: the daemon logs where the mistake is and keeps running on the config it has.
Top-level settings (listen address, database, ...) are wired into the server at start-up, so a
change to one is logged as waiting for a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import fields

from aiohttp import web

from heartbeatd.core.config import Config, ConfigError, NotifierSpec
from heartbeatd.core.model import Check, CheckDefinition
from heartbeatd.notify import build_notifiers, make_router
from heartbeatd.web.keys import CHECKS, CLOCK, CONFIG, DISPATCHER, STORE

log = logging.getLogger("heartbeatd.reload")


class Reloader:
    """Holds the config in force; `reload()` replaces it with what `read_config` returns."""

    def __init__(self, app: web.Application, read_config: Callable[[], Config]) -> None:
        self.app = app
        self._read = read_config
        self.config = app[CONFIG]
        self._lock = asyncio.Lock()  # a second SIGHUP waits for the first reload to finish

    async def reload(self) -> bool:
        """Apply the file as it is now; False (and nothing changed) when it has a mistake."""
        async with self._lock:
            try:
                new = self._read()
                notifiers = build_notifiers(new)
            except ConfigError as e:
                log.error("%s; still running on the previous config", e)
                return False
            for key in restart_only_changes(self.config, new):
                log.warning("%s changed; it takes effect at the next restart", key)
            for line in notifier_changes(self.config.notifiers, new.notifiers):
                log.info("%s", line)
            if watches_late(new) and not watches_late(self.config):
                log.warning("late events are watched from the next restart on")
            store, dispatcher = self.app[STORE], self.app[DISPATCHER]
            store.router = make_router(new)
            if new.silences != self.config.silences:  # held alerts settle by the new windows
                store.silences = new.silences
                await store.look_again_at_held(self.app[CLOCK].now())
            dispatcher.replace(notifiers, {spec.name: spec for spec in new.notifiers})
            before = {c.slug: c for c in await store.list_checks() if c.managed}
            for line in await self.app[CHECKS].reconcile(new.checks):
                log.info("%s", line)
            for line in check_changes(before, new.checks):
                log.info("%s", line)
            self.config = new
            log.info("config reloaded; %d checks in the file", len(new.checks))
            return True


RELOADED = ("checks", "notifiers", "silences", "source")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Settings read once at start-up (listen, db, ...) that the file changed."""
    names = [f.name for f in fields(Config) if f.name not in RELOADED]
    return [name for name in names if getattr(old, name) != getattr(new, name)]


def watches_late(config: Config) -> bool:
    return any("late" in spec.events for spec in config.notifiers)


def notifier_changes(old: tuple[NotifierSpec, ...], new: tuple[NotifierSpec, ...]) -> list[str]:
    before = {spec.name: _settings(spec) for spec in old}
    after = {spec.name: _settings(spec) for spec in new}
    lines = [f"added notifier {name}" for name in after if name not in before]
    lines += [f"changed notifier {name}" for name in after if before.get(name, after[name])
              != after[name]]  # fmt: skip
    lines += [f"removed notifier {name}" for name in before if name not in after]
    return lines


def _settings(spec: NotifierSpec) -> tuple[object, ...]:
    """What a notifier does, without where it was written: moving it in the file is no change."""
    return (spec.type, spec.default, spec.tags, dict(spec.options), spec.events, spec.repeat,
            spec.retry_for)  # fmt: skip


def check_changes(before: dict[str, Check], definitions: tuple[CheckDefinition, ...]) -> list[str]:
    """One line per managed check whose definition the file changed, naming the fields."""
    lines = []
    for definition in definitions:
        check = before.get(definition.slug)
        if check is None:
            continue
        current = check.definition()
        changed = [
            f.name for f in fields(CheckDefinition)
            if getattr(definition, f.name) != getattr(current, f.name)
        ]  # fmt: skip
        if changed:
            lines.append(f"changed check {definition.slug}: {', '.join(changed)}")
    return lines
