"""`heartbeatd notify test|log`: try a notifier, and see what was sent."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from heartbeatd.cli.common import config_options, load, with_store
from heartbeatd.core import model
from heartbeatd.core.clock import SystemClock
from heartbeatd.core.model import Check

if TYPE_CHECKING:
    from heartbeatd.notify import Event, Notifier
    from heartbeatd.store import Store


@click.group()
def notify() -> None:
    """Test notifiers and see what was sent."""


@notify.command("test")
@config_options
@click.argument("name")
@click.option("--check", "ref", metavar="SLUG-or-UUID", help="describe this check in the test")
def notify_test(config_file: str | None, db: str | None, name: str, ref: str | None) -> None:
    """Send a test message through notifier NAME and say whether it arrived."""
    from heartbeatd.notify import Event, NotifyError, build_notifiers

    config = load(config_file, db=db)
    spec = next((n for n in config.notifiers if n.name == name), None)
    if spec is None:
        known = ", ".join(n.name for n in config.notifiers)
        raise click.ClickException(f"no notifier named {name!r}; the config has: {known}")
    now = SystemClock().now()
    if ref is not None:
        subject = with_store(config, lambda store: store.get_check(ref))
    else:
        subject = sample_check(now)
    flip = model.Flip(now, subject.status, model.Status.DOWN, "test", "a test notification")
    event = Event("test", subject, flip, config.site_url, now=now)
    try:
        took = asyncio.run(_send_once(build_notifiers(config)[name], event))
    except (NotifyError, TimeoutError, OSError) as e:
        raise click.ClickException(f"{name}: {e or type(e).__name__}") from None
    click.echo(f"{name}: test message delivered in {took:.2f}s")


async def _send_once(notifier: Notifier, event: Event) -> float:
    started = asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(notifier.send(event), notifier.timeout)
    finally:
        await notifier.close()
    return asyncio.get_running_loop().time() - started


def sample_check(now: float) -> Check:
    return Check(
        id=0, uuid="00000000-0000-4000-8000-000000000000", name="heartbeatd test",
        slug="heartbeatd-test", tags="", desc="A test message: nothing is wrong.", period=3600.0,
        cron=None, tz="UTC", grace=300.0, misses=1, max_runtime=None, manual_resume=False,
        methods="", notifiers=None, managed=False, created=now, status=model.Status.UP,
        last_ping=now - 3600, last_start=None, last_start_rid=None, last_duration=None,
        n_pings=1, alert_after=None,
    )  # fmt: skip


@notify.command("log")
@config_options
@click.option("--check", "ref", metavar="SLUG-or-UUID", help="only this check's notifications")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def notify_log(config_file: str | None, db: str | None, ref: str | None, limit: int,
               as_json: bool) -> None:  # fmt: skip
    """Notifications, newest first: sent, pending (with the next attempt), failed, cancelled."""
    from heartbeatd.notify import iso

    config = load(config_file, db=db)

    async def read(store: Store) -> list[dict[str, Any]]:
        check_id = (await store.get_check(ref)).id if ref is not None else None
        return await store.outbox(limit, check_id)

    rows = with_store(config, read)
    if as_json:
        for row in rows:
            for key in ("sent_at", "next_attempt", "at"):
                row[key] = iso(row[key])
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        when = {"sent": f"at {iso(row['sent_at'])}", "pending": f"next {iso(row['next_attempt'])}"}
        outcome = when.get(row["state"], "")
        error = f": {row['last_error']}" if row["last_error"] else ""
        click.echo(
            f"{iso(row['at'])} {row['slug']} {row['event']} -> {row['notifier']}: {row['state']} "
            f"{outcome} after {row['attempts']} attempt(s){error}".replace("  ", " ")
        )
    if not rows:
        click.echo("no notifications yet")
