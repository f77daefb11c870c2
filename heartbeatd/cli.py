"""The heartbeatd command: serve, manage checks, send pings.

Check commands open the database directly, so they work whether or not the daemon runs; a
running daemon notices their commits within half a second (writer.py watches data_version).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial, wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from aiohttp import web

from heartbeatd import __version__, importer, model, systemd_timers
from heartbeatd import run as wrapper
from heartbeatd.app import create_app
from heartbeatd.assertions import show
from heartbeatd.auth import hash_password
from heartbeatd.backup import BackupError, backup, before_restore_path, restore
from heartbeatd.clock import SystemClock
from heartbeatd.config import Config, ConfigError, load_config
from heartbeatd.durations import format_duration, parse_bounded_duration
from heartbeatd.errors import HeartbeatdError
from heartbeatd.logs import setup_logging
from heartbeatd.model import Check, slugify
from heartbeatd.notify import Event, Notifier, NotifyError, build_notifiers, iso
from heartbeatd.reload import Reloader
from heartbeatd.schedule import describe, upcoming, validate_cron, validate_tz
from heartbeatd.sdnotify import Systemd, stop_watchdog
from heartbeatd.selfmon import HEARTBEAT_EVERY, describe_downtime
from heartbeatd.store import CheckDefinition, Store
from heartbeatd.web_keys import STORE

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


def read_config(config_file: str | None, **flags: str | None) -> Config:
    """The config from the file, environment and flags; raises ConfigError. SIGHUP calls it
    again with the same arguments."""
    overrides = {key: value for key, value in flags.items() if value is not None}
    return load_config(Path(config_file) if config_file else None, os.environ, overrides)


def load(config_file: str | None, **flags: str | None) -> Config:
    try:
        return read_config(config_file, **flags)
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
    run(_serve(app, config, partial(read_config, config_file, db=db, listen=listen)))


async def _serve(app: web.Application, config: Config, reread: Callable[[], Config]) -> None:
    systemd = Systemd.from_environ(os.environ)
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
        reloader = Reloader(app, reread)
        reloads: set[asyncio.Task[None]] = set()
        loop.add_signal_handler(signal.SIGHUP, _start_reload, reloader, systemd, reloads)
        systemd.ready(await _status(app))
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


def _start_reload(reloader: Reloader, systemd: Systemd, running: set[asyncio.Task[None]]) -> None:
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
    return f"watching {len(await app[STORE].armed())} checks"


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
    added = with_store(config, lambda s: s.add_check(definition, SystemClock().now(), actor="cli"))
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
    for p in pings or [{"created": None}]:
        if p["created"] is None:
            click.echo("  none")
            break
        extra = f" exit {p['exit_status']}" if p["exit_status"] is not None else ""
        took = f" took {p['duration']:.1f}s" if p["duration"] is not None else ""
        extra += "".join(f" {name}={show(name, value)}" for name, value in p["metrics"].items())
        click.echo(
            f"  #{p['n']} {iso(p['created'])} {p['kind']}{extra}{took} from {p['remote_addr']}"
        )
        for note in p["notes"]:
            click.echo(f"      note: {note}")
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


# -- run: the job wrapper -----------------------------------------------------------------


@cli.command("run", context_settings={"ignore_unknown_options": True,
                                      "allow_interspersed_args": False})  # fmt: skip
@config_options
@click.option("--check", "target", required=True, metavar="SLUG-or-UUID-or-URL",
              help="the check to report to")  # fmt: skip
@click.option("--url", "site_url", metavar="BASE",
              help="the daemon's base URL [env HEARTBEATD_SITE_URL]")  # fmt: skip
@click.option("--ping-key", envvar="HEARTBEATD_PING_KEY", metavar="KEY",
              help="for a slug: the instance's ping key [env HEARTBEATD_PING_KEY; default: "
                   "read from the database]")  # fmt: skip
@click.option("--rid", type=click.UUID, help="run id pairing start and finish [default: new]")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_wrapped(
    config_file: str | None, db: str | None, target: str, site_url: str | None,
    ping_key: str | None, rid: uuid.UUID | None, command: tuple[str, ...],
) -> None:  # fmt: skip
    """Run COMMAND, pinging the check at its start and with its exit status and output.

    The command's output passes through unchanged; its last Ping-Body-Limit bytes go with the
    final ping. Exits with the command's own exit code, also when the monitor is unreachable.
    """
    config = load(config_file, db=db, site_url=site_url)
    stdout, stderr = wrapper.unbuffered(1), wrapper.unbuffered(2)
    try:
        url = wrapper.check_url(target, config.site_url, lambda: ping_key or local_ping_key(config))
    except wrapper.PingFailed as e:
        wrapper.warn(stderr, f"not reporting to the monitor: {e}")
        sys.exit(wrapper.run_command(command, wrapper.Tail(0), stdout, stderr))
    pinger = wrapper.Pinger(url, str(rid or uuid.uuid4()))
    sys.exit(wrapper.run_job(command, pinger, stdout, stderr))


def local_ping_key(config: Config) -> str | None:
    """The ping key from the local database, when there is one (never creates it)."""
    if not Path(config.db).is_file():
        return None
    try:
        return with_store(config, lambda s: s.ping_key())
    except (click.ClickException, OSError, sqlite3.Error):
        return None


# -- API keys and audit log ---------------------------------------------------------------


@cli.group()
def apikey() -> None:
    """Create, list and revoke management API keys."""


@apikey.command("create")
@config_options
@click.option("--name", help="a name to tell keys apart in lists and the audit log [default: keyN]")
@click.option("--read-only", is_flag=True, help="a key that can only read checks, flips and badges")
def apikey_create(config_file: str | None, db: str | None, name: str | None,
                  read_only: bool) -> None:  # fmt: skip
    """Create a key and print it; it is shown this once, only its hash is stored."""
    config = load(config_file, db=db)
    key, chosen = with_store(
        config, lambda s: s.create_api_key(name, read_only, SystemClock().now(), "cli")
    )
    click.echo(key)
    kind = "read-only" if read_only else "read-write"
    click.echo(f"Created {kind} API key {chosen!r}. Store it now: it cannot be shown again.",
               err=True)  # fmt: skip
    click.echo(f"Use it as: curl -H 'X-Api-Key: {key[:4]}...' {config.site_url}/api/v3/checks/",
               err=True)  # fmt: skip


@apikey.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def apikey_list(config_file: str | None, db: str | None, as_json: bool) -> None:
    """List keys: name, access, when created and last used (never the key itself)."""
    config = load(config_file, db=db)
    keys = with_store(config, lambda s: s.api_keys())
    for key in keys:
        for field in ("created", "last_used", "revoked"):
            key[field] = iso(key[field])
    if as_json:
        click.echo(json.dumps(keys, indent=2))
        return
    if not keys:
        click.echo("No API keys yet: heartbeatd apikey create --name NAME")
        return
    rows = [("ID", "NAME", "ACCESS", "CREATED", "LAST USED", "REVOKED")]
    for k in keys:
        rows.append((str(k["id"]), k["name"], "read-only" if k["read_only"] else "read-write",
                     k["created"], k["last_used"] or "never", k["revoked"] or ""))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@apikey.command("revoke")
@config_options
@click.argument("ref", metavar="NAME-or-ID")
def apikey_revoke(config_file: str | None, db: str | None, ref: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    config = load(config_file, db=db)
    name = with_store(config, lambda s: s.revoke_api_key(ref, SystemClock().now(), "cli"))
    click.echo(f"Revoked API key {name!r}.")


@cli.command("audit")
@config_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def audit_log(config_file: str | None, db: str | None, limit: int, as_json: bool) -> None:
    """Changes, newest first: when, who, what, and the values before and after."""
    config = load(config_file, db=db)
    rows = with_store(config, lambda s: s.audit_log(limit))
    if as_json:
        click.echo(json.dumps([{**row, "at": iso(row["at"])} for row in rows], indent=2))
        return
    if not rows:
        click.echo("no changes recorded yet")
    for row in rows:
        click.echo(f"{iso(row['at'])} {row['actor']} {row['action']} {_audit_subject(row)}"
                   f"{_audit_change(row['before'], row['after'])}")  # fmt: skip


def _audit_subject(row: dict[str, Any]) -> str:
    """A check by its name and UUID; anything else by its target."""
    record = row["after"] or row["before"] or {}
    if "uuid" in record:
        return f"{record['name']!r} ({row['target']})"
    return str(row["target"])


def _audit_change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """`: key old -> new, ...` for the fields an update changed."""
    if before is None or after is None:
        return ""
    changed = [f"{key} {before.get(key)!r} -> {after[key]!r}"
               for key in after if before.get(key) != after[key]]  # fmt: skip
    return ": " + ", ".join(changed) if changed else ""


# -- web UI users -------------------------------------------------------------------------

MIN_PASSWORD = 8


@cli.group()
def user() -> None:
    """Users who can log in to the web UI."""


@user.command("set-password")
@config_options
@click.option("--user", "name", default="admin", show_default=True, help="the user to log in as")
@click.option("--stdin", "from_stdin", is_flag=True, help="read the password from standard input")
def user_set_password(config_file: str | None, db: str | None, name: str,
                      from_stdin: bool) -> None:  # fmt: skip
    """Create a web UI user or change their password (which logs them out everywhere)."""
    config = load(config_file, db=db)
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"the password needs at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    now = SystemClock().now()

    async def save(store: Store) -> None:
        await store.set_password(name, hashed, now)
        await store.record_audit(now, "cli", "user.set-password", name)

    with_store(config, save)
    click.echo(f"Password set for {name!r}; log in at {config.site_url}/login")


# -- status of heartbeatd itself ---------------------------------------------------------


@cli.command("status")
@config_options
def status(config_file: str | None, db: str | None) -> None:
    """Whether the daemon is alive, when it was last down, and the checks by status."""
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


# -- backup and restore -------------------------------------------------------------------


@cli.command("backup")
@config_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(config_file: str | None, db: str | None, file: Path) -> None:
    """Copy the database to FILE; safe while the daemon serves (SQLite's online backup)."""
    config = load(config_file, db=db)
    try:
        facts = backup(Path(config.db), file)
    except BackupError as e:
        raise click.ClickException(e.text) from None
    click.echo(f"Backed up {config.db} to {file}: {facts.checks} checks, {facts.pings} pings.")


@cli.command("restore")
@config_options
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore_command(config_file: str | None, db: str | None, file: Path) -> None:
    """Replace the database with the backup FILE (stop the daemon first).

    The current database is kept as <db>.before-restore.
    """
    config = load(config_file, db=db)
    target = Path(config.db)
    had_one = target.exists()
    try:
        facts = restore(file, target)
    except BackupError as e:
        raise click.ClickException(e.text) from None
    click.echo(f"Restored {target} from {file}: {facts.checks} checks, {facts.pings} pings.")
    if had_one:
        click.echo(f"The previous database is kept as {before_restore_path(target)}.")


# -- import: checks for the jobs cron already runs ----------------------------------------


@cli.group("import")
def import_jobs() -> None:
    """Propose checks for the jobs cron and systemd timers run, and how to make them report."""


@import_jobs.command("crontab")
@config_options
@click.argument("source", required=False, metavar="[FILE|-]")
@click.option("--tz", help="zone cron runs in  [default: /etc/timezone, /etc/localtime, $TZ]")
@click.option("--grace", default="1h", show_default=True, help="grace of the new checks")
@click.option("--system", is_flag=True, help="/etc/crontab format: a user field after the time")
@click.option("--with", "wrapper", type=click.Choice(["run", "hb"]), default="run",
              show_default=True, help="wrap with `heartbeatd run` or contrib/hb")  # fmt: skip
@click.option("--exe", metavar="PATH",
              help="the wrapper as cron should call it  [default: this heartbeatd's path, or "
                   "/usr/local/bin/hb]")  # fmt: skip
@click.option("--apply", is_flag=True, help="create the checks (existing slugs are reused)")
def import_crontab(
    config_file: str | None, db: str | None, source: str | None, tz: str | None, grace: str,
    system: bool, wrapper: str, exe: str | None, apply: bool,
) -> None:  # fmt: skip
    """Read a crontab (default: `crontab -l`) and propose one check per job.

    The table goes to stderr, the rewritten crontab to stdout; your crontab itself is never
    changed: `heartbeatd import crontab --apply > new && crontab new` installs it.
    """
    config = load(config_file, db=db)
    zone = import_zone(tz)
    grace_seconds = duration_option(grace, "--grace") or 0.0
    text = read_command(["crontab", "-l"]) if source is None else read_source(source)
    crontab = importer.parse_crontab(text, zone, system)
    proposals = importer.propose(crontab)
    for line in importer.table(proposals, crontab.skipped):
        click.echo(line, err=True)
    if apply:
        create_proposed(config, proposals, grace_seconds)
    key = local_ping_key(config) or "<ping-key>"
    header: list[str] = []
    if wrapper == "run":
        exe = exe or heartbeatd_path()
        wrappers = {p.job.line_no: f"{exe} run --check {p.slug}" for p in proposals}
        if proposals and not any(line.startswith("HEARTBEATD_PING_KEY=") for line in crontab.lines):
            header = [
                "# heartbeatd run reports to this instance; the key makes slug URLs work.",
                f"HEARTBEATD_SITE_URL={config.site_url}",
                f"HEARTBEATD_PING_KEY={key}",
            ]
    else:
        exe = exe or "/usr/local/bin/hb"
        wrappers = {p.job.line_no: f"{exe} {config.site_url}/ping/{key}/{p.slug}"
                    for p in proposals}  # fmt: skip
    click.echo(importer.rewrite(crontab, wrappers, header), nl=False)
    if not apply:
        click.echo("Dry run: no checks created; --apply creates them.", err=True)


def import_zone(tz: str | None) -> str:
    """The zone the imported schedules run in: --tz, else the system's."""
    zone = tz or importer.system_timezone(os.environ)
    try:
        validate_tz(zone)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--tz") from None
    return zone


def create_proposed(config: Config, proposals: Sequence[importer.Proposed], grace: float) -> None:
    created = with_store(config, lambda s: importer.create_checks(
        s, proposals, grace, SystemClock().now()))  # fmt: skip
    for found, new in created:
        verb = "created" if new else "reused existing"
        click.echo(f"{verb} check {found.slug} ({describe(found.schedule)})", err=True)


def read_source(source: str) -> str:
    """A FILE argument's text, or stdin's for `-`."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read {source}: {e}") from None


def heartbeatd_path() -> str:
    """This heartbeatd's absolute path: cron's PATH rarely includes a virtualenv."""
    if Path(sys.argv[0]).name == "heartbeatd":
        return os.path.abspath(sys.argv[0])
    return shutil.which("heartbeatd") or "heartbeatd"


@import_jobs.command("systemd-timers")
@config_options
@click.argument("source", required=False, metavar="[FILE|-]")
@click.option("--tz", help="zone of the timers  [default: /etc/timezone, /etc/localtime, $TZ]")
@click.option("--grace", default="1h", show_default=True, help="grace of the new checks")
@click.option("--apply", is_flag=True, help="create the checks (existing slugs are reused)")
def import_systemd_timers(
    config_file: str | None, db: str | None, source: str | None, tz: str | None, grace: str,
    apply: bool,
) -> None:  # fmt: skip
    """Read `systemctl list-timers --all` output (default: run it) and propose one check per timer.

    The table goes to stderr; the drop-ins that make each timer's service report go to stdout
    (they use contrib/systemd-timer/heartbeatd-ping@.service). Without FILE, each timer's
    OnCalendar= is read with `systemctl show`; otherwise the period is NEXT minus LAST.
    """
    config = load(config_file, db=db)
    zone = import_zone(tz)
    grace_seconds = duration_option(grace, "--grace") or 0.0
    listing = ["systemctl", "list-timers", "--all", "--no-pager"]
    text = read_command(listing) if source is None else read_source(source)
    try:
        timers = systemd_timers.parse_list_timers(text)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    calendars = {
        t.unit: systemd_timers.calendar_specs(read_command(
            ["systemctl", "show", "-p", "TimersCalendar", t.unit]))
        for t in timers if source is None
    }  # fmt: skip
    proposals, skipped = systemd_timers.propose_timers(timers, calendars, zone)
    for line in systemd_timers.table(proposals, skipped):
        click.echo(line, err=True)
    if apply:
        create_proposed(config, proposals, grace_seconds)
    for proposal in proposals:
        click.echo("\n".join(systemd_timers.drop_in(proposal)))
    if not apply:
        click.echo("Dry run: no checks created; --apply creates them.", err=True)


def read_command(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as e:
        raise click.ClickException(f"cannot run {argv[0]}: {e.strerror}; give a FILE") from None
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(argv)}: {done.stderr.strip() or 'failed'}")
    return done.stdout
