"""`heartbeatd check …`: add, list, show, pause, resume, remove and rotate checks."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from heartbeatd.cli.common import (
    config_options,
    duration_option,
    load,
    ping_url,
    print_table,
    with_store,
)
from heartbeatd.core import fields, model
from heartbeatd.core.clock import SystemClock
from heartbeatd.core.durations import format_duration
from heartbeatd.core.model import Check, CheckDefinition, run_example, slugify
from heartbeatd.core.rules.assertions import show
from heartbeatd.core.schedule import describe, upcoming

if TYPE_CHECKING:
    from heartbeatd.core.config import Config
    from heartbeatd.store import FlipRecord, PingRecord, Store

T = TypeVar("T")


def within_limits(
    check: Callable[[Any], T],
) -> Callable[[click.Context, click.Parameter, Any], T | None]:
    """A click callback: the value if `check` (one of fields.py's) takes it; otherwise click's
    error naming the argument or option, with the bound."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> T | None:
        if value is None:
            return value
        try:
            return check(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return callback


@click.group()
def check() -> None:
    """Add, list, show, pause, resume, remove and rotate checks."""


@check.command("add")
@config_options
@click.argument("name", callback=within_limits(fields.name))
@click.option("--period", help="expected interval, e.g. 5m, 1h, 1d  [default: 1d]")
@click.option("--cron", help='cron or OnCalendar expression instead of a period, e.g. "0 3 * * *" '
              'or "Mon..Fri 09:00"')  # fmt: skip
@click.option("--tz", default="UTC", show_default=True, help="time zone of --cron")
@click.option("--grace", default="1h", show_default=True, help="how late a ping may be")
@click.option("--slug", callback=within_limits(fields.slug),
              help="slug for /ping/<ping-key>/<slug> URLs  [default: from NAME]")  # fmt: skip
@click.option("--tag", "tags", multiple=True, callback=within_limits(fields.tags),
              help="a tag (repeatable)")  # fmt: skip
@click.option("--desc", default="", help="description",
              callback=within_limits(fields.desc))  # fmt: skip
@click.option("--notifier", "notifiers", multiple=True, help="notifier name (repeatable)")
@click.option("--misses", default=1, show_default=True, type=int,
              callback=within_limits(fields.misses),
              help="alert after this many missed periods in a row")  # fmt: skip
@click.option("--failures", default=1, show_default=True, type=int,
              callback=within_limits(fields.failures),
              help="alert after this many failed, timed-out or missed runs in a row")  # fmt: skip
@click.option("--recoveries", default=1, show_default=True, type=int,
              callback=within_limits(fields.recoveries),
              help="recover after this many successful runs in a row")  # fmt: skip
@click.option("--early", default="0s", show_default=True,
              callback=within_limits(fields.early_duration),
              help="with --cron: a ping this early for a slot counts for it")  # fmt: skip
@click.option("--max-runtime", help="longest a started run may take  [default: the grace]")
@click.option("--json", "as_json", is_flag=True, help="print the check as JSON")
def check_add(
    config_file: str | None, db: str | None, name: str, period: str | None, cron: str | None,
    tz: str, grace: str, slug: str | None, tags: tuple[str, ...], desc: str,
    notifiers: tuple[str, ...], misses: int, failures: int, recoveries: int, early: float,
    max_runtime: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Add a check and print its ping URL and a crontab line."""
    config = load(config_file, db=db)
    if period and cron:
        raise click.UsageError("give --period or --cron, not both")
    if cron:
        try:
            fields.cron(cron)
            fields.tz(tz)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--cron/--tz") from None
    known = {n.name for n in config.notifiers}
    for name_ in notifiers:
        if name_ not in known:
            raise click.BadParameter(
                f"no notifier {name_!r} in the config", param_hint="--notifier"
            )
    definition = CheckDefinition(
        name=name,
        slug=slug if slug is not None else slugify(name),
        period=None if cron else duration_option(period or "1d", "--period"),
        cron=cron,
        tz=tz,
        grace=duration_option(grace, "--grace") or 0,
        tags=tags,
        desc=desc,
        notifiers=notifiers or None,
        misses=misses,
        failures=failures,
        recoveries=recoveries,
        early=early,
        max_runtime=duration_option(max_runtime, "--max-runtime"),
    )
    added = with_store(config, lambda s: s.add_check(definition, SystemClock().now(), actor="cli"))
    if as_json:
        click.echo(json.dumps(check_dict(added, config), indent=2))
        return
    url = ping_url(config, added)
    click.echo(f"Added check {added.name!r} ({describe(added.schedule)}, grace "
               f"{format_duration(added.grace)}).")  # fmt: skip
    click.echo(f"Ping URL: {url}")
    scheduler, example = run_example(
        added, f"/path/to/job && curl -fsS -m 10 --retry 5 -o /dev/null {url}"
    )
    click.echo(f"{scheduler.capitalize()} (your command, then the ping when it succeeds):")
    click.echo(textwrap.indent(example, "  "))


def check_dict(check: Check, config: Config) -> dict[str, Any]:
    from heartbeatd.notify import iso

    now = SystemClock().now()
    return {
        "uuid": check.uuid,
        "name": check.name,
        "slug": check.slug,
        "tags": check.tags,
        "desc": check.desc,
        "status": str(model.status_at(check, now)),
        "schedule": describe(check.schedule),
        "period": check.period,
        "cron": check.cron,
        "tz": check.tz,
        "grace": check.grace,
        "misses": check.misses,
        "failures": check.failures,
        "recoveries": check.recoveries,
        "early": check.early,
        "counting": model.counting(check, now),
        "max_runtime": check.max_runtime,
        "notifiers": list(check.notifiers) if check.notifiers is not None else None,
        "managed_by_config": check.managed,
        "last_ping": iso(check.last_ping),
        "last_duration": check.last_duration,
        "next_expected": [iso(t) for t in upcoming(check.schedule, check.last_ping or now, 1)],
        "n_pings": check.n_pings,
        "ping_url": ping_url(config, check),
    }


@check.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def check_list(config_file: str | None, db: str | None, as_json: bool) -> None:
    """List every check with its status."""
    from heartbeatd.notify import iso

    config = load(config_file, db=db)
    checks = with_store(config, lambda s: s.list_checks())
    if as_json:
        click.echo(json.dumps([check_dict(c, config) for c in checks], indent=2))
        return
    if not checks:
        click.echo("No checks yet: heartbeatd check add NAME --period 5m")
        return
    now = SystemClock().now()
    rows = [("STATUS", "NAME", "SLUG", "SCHEDULE", "LAST PING", "UUID")]
    for c in checks:
        status = str(model.status_at(c, now))
        rows.append((status, c.name, c.slug, describe(c.schedule), iso(c.last_ping) or "never",
                     c.uuid))  # fmt: skip
    print_table(rows)


@check.command("show")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def check_show(config_file: str | None, db: str | None, ref: str, as_json: bool) -> None:
    """Show one check, its recent pings and its status changes."""
    from heartbeatd.notify import iso

    config = load(config_file, db=db)

    async def gather(store: Store) -> tuple[Check, list[PingRecord], list[FlipRecord]]:
        found = await store.get_check(ref)
        return found, await store.pings(found.id, 20), await store.flips(found.id, 20)

    found, pings, flips = with_store(config, gather)
    info = check_dict(found, config)
    if as_json:
        info["rules"] = found.rules.as_config()
        info["pings"] = [
            {**p, "created": iso(p["created"]), "body": _text(p["body"])} for p in pings
        ]
        info["flips"] = [{**f, "at": iso(f["at"]), "noticed": iso(f["noticed"])} for f in flips]
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in [*info.items(), *found.rules.describe()]:
        click.echo(f"{key + ':':<20}{value}")
    click.echo("\nRecent pings:")
    for p in pings:
        extra = f" exit {p['exit_status']}" if p["exit_status"] is not None else ""
        took = f" took {p['duration']:.1f}s" if p["duration"] is not None else ""
        extra += "".join(f" {name}={show(name, value)}" for name, value in p["metrics"].items())
        click.echo(
            f"  #{p['n']} {iso(p['created'])} {p['kind']}{extra}{took} from {p['remote_addr']}"
        )
        for note in p["notes"]:
            click.echo(f"      note: {note}")
    if not pings:
        click.echo("  none")
    click.echo("\nStatus changes:")
    for f in flips:
        detail = f" ({f['detail']})" if f["detail"] else ""
        click.echo(
            f"  {iso(f['at'])} {f['old_status']} -> {f['new_status']}: {f['reason']}{detail}"
        )
    if not flips:
        click.echo("  none")


def _text(body: bytes | None) -> str | None:
    return body.decode("utf-8", "replace") if body else None


def state_command(name: str, change: Callable[[Check, float], model.Flip | None], done: str,
                  refused: str | None) -> None:  # fmt: skip
    @check.command(name)
    @config_options
    @click.argument("ref", metavar="SLUG-or-UUID")
    @wraps(change)
    def command(config_file: str | None, db: str | None, ref: str) -> None:
        config = load(config_file, db=db)
        found, flip = with_store(
            config, lambda s: s.change_state(ref, change, SystemClock().now(), "cli")
        )
        if flip is None and refused:
            raise click.ClickException(refused)
        click.echo(f"{done} {found.name!r}.")

    command.__doc__ = f"{name.capitalize()} a check."


state_command("pause", model.pause, "Paused", None)
state_command("resume", model.resume, "Resumed", "check is not paused")


@check.command("remove")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
def check_remove(config_file: str | None, db: str | None, ref: str) -> None:
    """Remove a check and its history; its ping URL answers 404 from now on."""
    config = load(config_file, db=db)
    removed = with_store(config, lambda s: s.remove(ref, "cli", SystemClock().now()))
    if removed.managed:
        click.echo("Note: it is declared in the config file and comes back at the next start.")
    click.echo(f"Removed {removed.name!r}.")


@check.command("rotate")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
def check_rotate(config_file: str | None, db: str | None, ref: str) -> None:
    """Give a check a new ping URL; the old one answers 404 from now on."""
    config = load(config_file, db=db)
    rotated = with_store(config, lambda s: s.rotate(ref, "cli", SystemClock().now()))
    click.echo(f"New ping URL for {rotated.name!r}: {ping_url(config, rotated)}")
