"""The `log` notifier: one line on stderr per alert; the default, so a fresh install alerts."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from heartbeatd.core.model import label
from heartbeatd.notify import Event
from heartbeatd.notify.options import Options

log = logging.getLogger("heartbeatd.alert")


class LogNotifier:
    timeout = 5.0

    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        Options("log", options).done()
        self.name = name

    async def send(self, event: Event) -> None:
        level = logging.WARNING if event.kind == "down" else logging.INFO
        log.log(level, "%s [%s, %s]", event.summary, label(event.check), event.ping_url)

    async def close(self) -> None:
        pass
