"""`heartbeatd serve`: the daemon, with systemd's notify protocol and SIGHUP reloads."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import click

from heartbeatd import __version__
from heartbeatd.cli.common import config_options, load, read_config, run

if TYPE_CHECKING:
    from aiohttp import web

    from heartbeatd.core.config import Config
    from heartbeatd.daemon.reload import Reloader
    from heartbeatd.daemon.sdnotify import Systemd

log = logging.getLogger("heartbeatd")


@click.command()
@config_options
@click.option("--listen", metavar="HOST:PORT", help="address to serve on [env HEARTBEATD_LISTEN]")
def serve(config_file: str | None, db: str | None, listen: str | None) -> None:
    """Run the daemon: ping API, status page, timer wheel and notifiers."""
    from heartbeatd.core.config import ConfigError
    from heartbeatd.daemon.logs import setup_logging
    from heartbeatd.web.app import create_app

    config = load(config_file, db=db, listen=listen)
    setup_logging()
    _keep_big_buffers_off_the_heap()
    # The commit thread needs the GIL back after each fsync; while the loop is busy it waits up
    # to the switch interval (5 ms by default), which is latency every ping of the batch pays.
    sys.setswitchinterval(0.001)
    try:
        app = create_app(config)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    run(_serve(app, config, partial(read_config, config_file, db=db, listen=listen)))


async def _serve(app: web.Application, config: Config, reread: Callable[[], Config]) -> None:
    from aiohttp import web

    from heartbeatd.daemon.reload import Reloader
    from heartbeatd.daemon.sdnotify import Systemd, stop_watchdog
    from heartbeatd.daemon.server import make_runner
    from heartbeatd.web.exposure import summary

    systemd = Systemd.from_environ(os.environ)
    runner = make_runner(app)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
        except OSError as e:
            raise click.ClickException(f"cannot listen on {config.listen}: {e.strerror}") from None
        addresses = ", ".join(f"{host}:{port}" for host, port, *_ in runner.addresses)
        log.info("heartbeatd %s listening on %s", __version__, addresses)
        log.info("%s", summary(config))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        reloader = Reloader(app, reread)
        reloads: set[asyncio.Task[None]] = set()
        loop.add_signal_handler(signal.SIGHUP, _start_reload, reloader, systemd, reloads)
        systemd.ready(await _status(app))
        _spare_the_garbage_collector()
        watchdog = systemd.start_watchdog()
        await stop.wait()
        systemd.stopping()
        log.info("shutting down: finishing in-flight pings")
        loop.remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads)
        await stop_watchdog(watchdog)
    finally:
        await runner.cleanup()
        systemd.close()


# Container allocations between young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def _spare_the_garbage_collector() -> None:
    """Keep the cyclic garbage collector from walking what lives as long as the daemon.

    Under load, objects of the requests in flight survive young collections and are promoted,
    so full collections come often, and each walks every object the process holds (modules,
    templates, the check cache). Objects made at start-up are frozen out of collections, and
    young collections run every 20,000 allocations instead of 700: finished requests are mostly
    freed by reference counting before then. Measured (1,000 checks, 500 connections, CPU per
    ping, 4 alternating runs): median 265 us as CPython ships, 210 us so.
    """
    import gc

    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


# Whether the C library is glibc (its confstr name exists nowhere else), whose mallopt()
# parameter M_MMAP_THRESHOLD (malloc.h) we set, and to what.
GLIBC = "CS_GNU_LIBC_VERSION" in getattr(os, "confstr_names", {})
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024


def _keep_big_buffers_off_the_heap() -> None:
    """Have glibc map each buffer of 64 kB or more on its own, and unmap it when it is freed.

    The status page (250 kB for 200 checks) and /metrics (130 kB) are built as one string each
    and encoded, once a second under a dashboard's refresh. glibc maps a big allocation that no
    free chunk fits, but raises the threshold for that to the size of any mapped block freed,
    so after the first page they grow the heap instead; each render is a little longer than the
    one before and does not fit the hole it left, and the heap shrinks only from its top. In the
    soak (`benchmarks/soak.py`) the heap grew 0.2 MB a minute while the memory in use stayed
    flat: +8.2 % RSS in 20 minutes. A threshold that is set stays put, and the heap then grows
    only for smaller buffers: +2.2 % in 40 minutes, flat from the second. Left alone: other C
    libraries, and a threshold the operator chose (MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES).
    """
    import ctypes

    if not GLIBC:
        return
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return
    ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _start_reload(reloader: Reloader, systemd: Systemd, running: set[asyncio.Task[None]]) -> None:
    from heartbeatd.core.errors import HeartbeatdError

    async def reload() -> None:
        systemd.reloading()
        try:
            applied = await reloader.reload()
        except HeartbeatdError as e:  # the database refused the checks: they stay as they were
            log.error("reload: cannot update the checks: %s", e.text)
            applied = False
        systemd.ready(await _status(reloader.app) + ("" if applied else "; reload failed"))

    task = asyncio.get_running_loop().create_task(reload(), name="heartbeatd-reload")
    running.add(task)
    task.add_done_callback(running.discard)


async def _status(app: web.Application) -> str:
    """The one-line STATUS that `systemctl status` shows."""
    from heartbeatd.web.keys import STORE

    return f"watching {len(await app[STORE].armed())} checks"
