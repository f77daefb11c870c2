"""`heartbeatd import crontab|systemd-timers`: checks for the jobs the host already runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from heartbeatd.cli.common import (
    config_options,
    duration_option,
    load,
    local_ping_key,
    with_store,
)
from heartbeatd.core import fields
from heartbeatd.core.clock import SystemClock
from heartbeatd.core.schedule import describe

if TYPE_CHECKING:
    from heartbeatd.core.config import Config
    from heartbeatd.importers.crontab import Proposed


@click.group("import")
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
    from heartbeatd.importers import crontab as importer

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
    from heartbeatd.importers.crontab import system_timezone

    zone = tz or system_timezone(os.environ)
    try:
        fields.tz(zone)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--tz") from None
    return zone


def create_proposed(config: Config, proposals: Sequence[Proposed], grace: float) -> None:
    from heartbeatd.importers.crontab import create_checks

    created = with_store(config, lambda s: create_checks(
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
    from heartbeatd.importers import systemd as systemd_timers

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
