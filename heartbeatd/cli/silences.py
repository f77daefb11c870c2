"""`heartbeatd silence …`: snooze a check's alerts, list the silences, lift a snooze.

Like the check commands they open the database directly; a running daemon notices the commit
and settles the check's held alerts at once when a snooze is lifted (store/silences.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from heartbeatd.cli.common import config_options, load, print_listing, with_store
from heartbeatd.core.clock import SystemClock
from heartbeatd.core.durations import format_duration, format_elapsed, parse_duration
from heartbeatd.core.silence import MAX_REASON, MAX_SNOOZE, listed

if TYPE_CHECKING:
    from heartbeatd.core.model import Check
    from heartbeatd.store import Store


@click.group()
def silence() -> None:
    """Snooze a check's alerts, list the silences, lift a snooze."""


def snooze_length(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if not 0 < seconds <= MAX_SNOOZE:
        raise click.BadParameter(f"must be more than 0s and at most {format_duration(MAX_SNOOZE)}")
    return seconds


def bounded_reason(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if len(value) > MAX_REASON:
        raise click.BadParameter(f"at most {MAX_REASON} characters")
    return value


@silence.command("add")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
@click.option("--for", "seconds", required=True, callback=snooze_length,
              help="how long, e.g. 30m, 2h, 1d (at most 7d)")  # fmt: skip
@click.option("--reason", default="", callback=bounded_reason, help="said in held alerts")
def silence_add(
    config_file: str | None, db: str | None, ref: str, seconds: float, reason: str
) -> None:
    """Hold a check's alerts for a while (replacing its snooze); it is still monitored."""
    config = load(config_file, db=db)
    now = SystemClock().now()
    check = with_store(config, lambda s: s.snooze(ref, now + seconds, reason, now, "cli"))
    click.echo(f"Snoozed {check.name!r} for {format_elapsed(seconds)}.")


@silence.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def silence_list(config_file: str | None, db: str | None, as_json: bool) -> None:
    """The config's [[silence]] windows and every running snooze."""
    config = load(config_file, db=db)
    now = SystemClock().now()
    snoozed = with_store(config, lambda s: s.snoozed_checks(now))
    print_listing(
        listed(config.silences, snoozed, now), as_json, ("ends",),
        "No silences. Snooze a check with `heartbeatd silence add CHECK --for 2h`.",
        ("KIND", "NAME", "HOLDS", "ENDS"),
        lambda item: (
            str(item["kind"]), str(item["name"]),
            str(item.get("slug") or " ".join(item["tags"] + item["checks"]) or "every check"),
            str(item["ends"] or "-"),
        ),
    )  # fmt: skip


@silence.command("remove")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
def silence_remove(config_file: str | None, db: str | None, ref: str) -> None:
    """Lift a check's snooze; alerts held by it are settled at once."""
    config = load(config_file, db=db)
    now = SystemClock().now()

    async def lift(store: Store) -> Check:
        check = await store.get_check(ref)
        if check.id not in await store.snoozes(now):
            raise click.ClickException(f"{check.name!r} is not snoozed")
        return await store.snooze(ref, now, "", now, "cli")

    click.echo(f"Lifted the snooze of {with_store(config, lift).name!r}.")
