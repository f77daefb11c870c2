"""`heartbeatd status`: whether the daemon is alive, read from its database."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click

from heartbeatd.cli.common import config_options, load, with_store
from heartbeatd.core import model
from heartbeatd.core.clock import SystemClock

if TYPE_CHECKING:
    from heartbeatd.core.model import Check
    from heartbeatd.store import Store


@click.command("status")
@config_options
def status(config_file: str | None, db: str | None) -> None:
    """Whether the daemon is alive, when it was last down, and the checks by status."""
    from heartbeatd.notify import iso
    from heartbeatd.watch.selfmon import HEARTBEAT_EVERY, describe_downtime

    config = load(config_file, db=db)

    async def read(store: Store) -> tuple[float | None, tuple[float, float] | None, list[Check]]:
        return await store.alive_at(), await store.last_downtime(), await store.list_checks()

    alive_at, downtime, checks = with_store(config, read)
    now = SystemClock().now()
    if alive_at is None:
        click.echo("heartbeatd: has not served this database yet")
    else:
        running = "running" if now - alive_at < 2 * HEARTBEAT_EVERY else "not running"
        click.echo(f"heartbeatd: {running}, last heartbeat {iso(alive_at)}")
    last = describe_downtime(downtime) if downtime else "none recorded"
    click.echo(f"last downtime: {last}")
    counts = Counter(str(model.status_at(c, now)) for c in checks)
    by_status = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    click.echo(f"checks: {len(checks)}" + (f" ({by_status})" if checks else ""))
