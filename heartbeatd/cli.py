"""The heartbeatd command: serve, manage checks, send pings.

Check commands open the database directly, so they work whether or not the daemon runs; a
running daemon notices their commits within half a second (writer.py watches data_version).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from aiohttp import web

from heartbeatd import __version__, model
from heartbeatd.app import create_app
from heartbeatd.clock import SystemClock
from heartbeatd.config import Config, ConfigError, load_config
from heartbeatd.durations import format_duration, parse_bounded_duration
from heartbeatd.errors import HeartbeatdError
from heartbeatd.logs import setup_logging
from heartbeatd.model import Check, slugify
from heartbeatd.notify import Event, Notifier, NotifyError, build_notifiers, iso
from heartbeatd.schedule import describe, upcoming, validate_cron, validate_tz
from heartbeatd.store import CheckDefinition, Store

log = logging.getLogger("heartbeatd")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def config_options(command: F) -> F:
    command = click.option(
        "--db", type=click.Path(dir_okay=False), help="SQLite file [env HEARTBEATD_DB]"
    )(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, exists=True),
        envvar="HEARTBEATD_CONFIG",
        help="TOML config file [env HEARTBEATD_CONFIG]",
    )(command)


def load(config_file: str | None, **flags: str | None) -> Config:
    overrides = {key: value for key, value in flags.items() if value is not None}
    try:
        return load_config(Path(config_file) if config_file else None, os.environ, overrides)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning heartbeatd's errors into one sentence on stderr."""
    try:
        return asyncio.run(coro)
    except HeartbeatdError as e:
        raise click.ClickException(e.text) from None


def with_store(config: Config, action: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Store(config.db, config.ping_retention) as store:
            return await action(store)

    return run(go())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="heartbeatd")
def cli() -> None:
    """heartbeatd: a self-hosted heartbeat monitor for cron jobs and other scheduled work."""


# -- serve --------------------------------------------------------------------------------


@cli.command()
@config_options
@click.option("--listen", metavar="HOST:PORT", help="address to serve on [env HEARTBEATD_LISTEN]")
def serve(config_file: str | None, db: str | None, listen: str | None) -> None:
    """Run the daemon: ping API, status page, timer wheel and notifiers."""
    config = load(config_file, db=db, listen=listen)
    setup_logging()
    # The commit thread needs the GIL back after each fsync; while the loop is busy it waits up
    # to the switch interval (5 ms by default), which is latency every ping of the batch pays.
    sys.setswitchinterval(0.001)
    try:
        app = create_app(config)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    run(_serve(app, config))


async def _serve(app: web.Application, config: Config) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
        except OSError as e:
            raise click.ClickException(f"cannot listen on {config.listen}: {e.strerror}") from None
        addresses = ", ".join(f"{host}:{port}" for host, port, *_ in runner.addresses)
        log.info("heartbeatd %s listening on %s", __version__, addresses)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting down: finishing in-flight pings")
    finally:
        await runner.cleanup()


# -- notifications ------------------------------------------------------------------------


@cli.group()
def notify() -> None:
    """Test notifiers and see what was sent."""


@notify.command("test")
@config_options
@click.argument("name")
@click.option("--check", "ref", metavar="SLUG-or-UUID", help="describe this check in the test")
def notify_test(config_file: str | None, db: str | None, name: str, ref: str | None) -> None:
    """Send a test message through notifier NAME and say whether it arrived."""
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


# -- checks -------------------------------------------------------------------------------


@cli.group()
def check() -> None:
    """Add, list, show, pause, resume, remove and rotate checks."""


def duration_option(value: str | None, param: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_bounded_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=param) from None


@check.command("add")
@config_options
@click.argument("name")
@click.option("--period", help="expected interval, e.g. 5m, 1h, 1d  [default: 1d]")
@click.option("--cron", help='cron expression instead of a period, e.g. "0 3 * * *"')
@click.option("--tz", default="UTC", show_default=True, help="time zone of --cron")
@click.option("--grace", default="1h", show_default=True, help="how late a ping may be")
@click.option("--slug", help="slug for /ping/<ping-key>/<slug> URLs  [default: from NAME]")
@click.option("--tag", "tags", multiple=True, help="a tag (repeatable)")
@click.option("--desc", default="", help="description")
@click.option("--notifier", "notifiers", multiple=True, help="notifier name (repeatable)")
@click.option("--misses", default=1, show_default=True, type=click.IntRange(1, 100),
              help="alert after this many missed periods in a row")  # fmt: skip
@click.option("--max-runtime", help="longest a started run may take  [default: the grace]")
@click.option("--json", "as_json", is_flag=True, help="print the check as JSON")
def check_add(
    config_file: str | None, db: str | None, name: str, period: str | None, cron: str | None,
    tz: str, grace: str, slug: str | None, tags: tuple[str, ...], desc: str,
    notifiers: tuple[str, ...], misses: int, max_runtime: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Add a check and print its ping URL and a crontab line."""
    config = load(config_file, db=db)
    if period and cron:
        raise click.UsageError("give --period or --cron, not both")
    if cron:
        try:
            validate_cron(cron)
            validate_tz(tz)
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
        max_runtime=duration_option(max_runtime, "--max-runtime"),
    )
    added = with_store(config, lambda s: s.add_check(definition, SystemClock().now()))
    if as_json:
        click.echo(json.dumps(check_dict(added, config), indent=2))
        return
    url = ping_url(config, added)
    click.echo(f"Added check {added.name!r} ({describe(added.schedule)}, grace "
               f"{format_duration(added.grace)}).")  # fmt: skip
    click.echo(f"Ping URL: {url}")
    click.echo("Crontab line (your command, then the ping when it succeeds):")
    click.echo(
        f"  {crontab_schedule(added)} /path/to/job && curl -fsS -m 10 --retry 5 -o /dev/null {url}"
    )


def crontab_schedule(check: Check) -> str:
    """A crontab schedule that runs as often as the check expects (a guess for odd periods)."""
    if check.cron:
        return check.cron
    seconds = int(check.period or 0)
    if seconds == 60:
        return "* * * * *"
    if seconds < 3600 and seconds % 60 == 0 and 3600 % seconds == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds < 86400 and seconds % 3600 == 0 and 86400 % seconds == 0:
        return f"0 */{seconds // 3600} * * *"
    if seconds == 604800:
        return "0 3 * * 0"
    return "0 3 * * *"


def ping_url(config: Config, check: Check) -> str:
    return f"{config.site_url}/ping/{check.uuid}"


def check_dict(check: Check, config: Config) -> dict[str, Any]:
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@check.command("show")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def check_show(config_file: str | None, db: str | None, ref: str, as_json: bool) -> None:
    """Show one check, its recent pings and its status changes."""
    config = load(config_file, db=db)

    async def gather(store: Store) -> tuple[Check, list[dict[str, Any]], list[dict[str, Any]]]:
        found = await store.get_check(ref)
        return found, await store.pings(found.id, 20), await store.flips(found.id, 20)

    found, pings, flips = with_store(config, gather)
    info = check_dict(found, config)
    if as_json:
        info["pings"] = [
            {**p, "created": iso(p["created"]), "body": _text(p["body"])} for p in pings
        ]
        info["flips"] = [{**f, "at": iso(f["at"]), "noticed": iso(f["noticed"])} for f in flips]
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key + ':':<20}{value}")
    click.echo("\nRecent pings:")
    for p in pings or [{"created": None}]:
        if p["created"] is None:
            click.echo("  none")
            break
        extra = f" exit {p['exit_status']}" if p["exit_status"] is not None else ""
        took = f" took {p['duration']:.1f}s" if p["duration"] is not None else ""
        click.echo(
            f"  #{p['n']} {iso(p['created'])} {p['kind']}{extra}{took} from {p['remote_addr']}"
        )
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
        found, flip = with_store(config, lambda s: s.change_state(ref, change, SystemClock().now()))
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
    removed = with_store(config, lambda s: s.remove(ref))
    if removed.managed:
        click.echo("Note: it is declared in the config file and comes back at the next start.")
    click.echo(f"Removed {removed.name!r}.")


@check.command("rotate")
@config_options
@click.argument("ref", metavar="SLUG-or-UUID")
def check_rotate(config_file: str | None, db: str | None, ref: str) -> None:
    """Give a check a new ping URL; the old one answers 404 from now on."""
    config = load(config_file, db=db)
    rotated = with_store(config, lambda s: s.rotate(ref))
    click.echo(f"New ping URL for {rotated.name!r}: {ping_url(config, rotated)}")


# -- ping key and pings -------------------------------------------------------------------


@cli.command("ping-key")
@config_options
@click.option("--rotate", is_flag=True, help="replace the key; old slug URLs stop working")
def ping_key(config_file: str | None, db: str | None, rotate: bool) -> None:
    """Print the instance's ping key, used in /ping/<ping-key>/<slug> URLs."""
    config = load(config_file, db=db)
    key = with_store(config, lambda s: s.rotate_ping_key() if rotate else s.ping_key())
    click.echo(key)
    click.echo(f"Slug URLs: {config.site_url}/ping/{key}/<slug>", err=True)


@cli.command("ping")
@config_options
@click.argument("target", metavar="URL-or-UUID")
@click.option("--start", "action", flag_value="start", help="signal that the job started")
@click.option("--fail", "action", flag_value="fail", help="signal that the job failed")
@click.option("--log", "action", flag_value="log", help="send a log message only")
@click.option("--exit", "exit_code", type=click.IntRange(0, 255), help="report an exit status")
@click.option("--rid", help="run id (a UUID) pairing start and finish")
@click.option("--body", help="text to send as the ping body ('-' reads stdin)")
def send_ping(
    config_file: str | None, db: str | None, target: str, action: str | None,
    exit_code: int | None, rid: str | None, body: str | None,
) -> None:  # fmt: skip
    """Ping a check by its URL or UUID (handy for testing a setup)."""
    config = load(config_file, db=db)
    url = (
        target if target.startswith(("http://", "https://")) else f"{config.site_url}/ping/{target}"
    )
    suffix = str(exit_code) if exit_code is not None else action
    if suffix:
        url = f"{url.rstrip('/')}/{suffix}"
    if rid:
        url = f"{url}?rid={rid}"
    data = (sys.stdin.read() if body == "-" else body or "").encode()
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            click.echo(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        raise click.ClickException(
            f"HTTP {e.code}: {e.read().decode('utf-8', 'replace')}"
        ) from None
    except OSError as e:
        raise click.ClickException(f"cannot reach {url}: {e}") from None
