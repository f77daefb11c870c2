"""The sd_notify protocol: tell systemd when heartbeatd is ready, reloading, alive and stopping.

A few datagrams on the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or `@name` for an
abstract socket), so no dependency. Outside systemd every call is a no-op. The watchdog pings
come from a task on the event loop: if the loop gets stuck, the pings stop, and systemd
(WatchdogSec=) kills and restarts the daemon instead of letting it sit silent while checks
go unwatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("heartbeatd.systemd")

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Systemd:
    """The service manager's notification socket, or nothing when not run by systemd."""

    def __init__(self, address: str | None, watchdog_interval: float | None) -> None:
        self._address = address
        self.watchdog_interval = watchdog_interval
        self._socket: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> Systemd:
        """Read and remove the variables, so commands heartbeatd starts (shell notifiers) do
        not inherit them and talk to systemd in our name."""
        values = {name: environ.pop(name, "") for name in VARIABLES}
        address = values["NOTIFY_SOCKET"]
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            address = ""  # unset, or a vsock address this daemon does not speak
        interval = _watchdog_interval(values["WATCHDOG_USEC"], values["WATCHDOG_PID"])
        return cls(address or None, interval)

    def notify(self, *fields: str) -> None:
        """Send `KEY=value` fields in one datagram; a failure is logged once, never raised:
        losing the service manager's bookkeeping must not stop the monitor."""
        if self._address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as e:
            if not self._failing:
                log.warning("cannot notify systemd: %s", e.strerror or e)
            self._failing = True
            return
        self._failing = False

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """RELOADING=1 with the CLOCK_MONOTONIC moment, which systemd ≥ 253 requires to tell
        this reload from an earlier one."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=shutting down")

    def start_watchdog(self) -> asyncio.Task[None] | None:
        if self._address is None or self.watchdog_interval is None:
            return None
        return asyncio.create_task(self._watchdog(self.watchdog_interval), name="sd-watchdog")

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(usec: str, pid: str) -> float | None:
    """Half of WatchdogSec, as sd_watchdog_enabled(3) advises; None when the watchdog is off
    or meant for another process."""
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
