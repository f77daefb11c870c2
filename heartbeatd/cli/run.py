"""`heartbeatd run`: the job wrapper's command line (the wrapper itself is heartbeatd/run.py).

It runs before every wrapped job, so it imports nothing of the daemon: no aiohttp, no jinja2,
and the store only when a slug needs the ping key from the local database.
"""

from __future__ import annotations

import sys
import uuid

import click

from heartbeatd.cli import client as wrapper
from heartbeatd.cli.common import config_options, load, local_ping_key


@click.command("run", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})  # fmt: skip
@config_options
@click.option("--check", "target", required=True, metavar="SLUG-or-UUID-or-URL",
              help="the check to report to")  # fmt: skip
@click.option("--url", "site_url", metavar="BASE", envvar=["HEARTBEATD_URL", "HC_API_URL"],
              help="the daemon's base URL, or its ping endpoint (http://host:8000/ping) "
                   "[env HEARTBEATD_URL, then HC_API_URL; default: the config's site_url, "
                   "env HEARTBEATD_SITE_URL]")  # fmt: skip
@click.option("--ping-key", envvar="HEARTBEATD_PING_KEY", metavar="KEY",
              help="for a slug: the instance's ping key [env HEARTBEATD_PING_KEY; default: "
                   "read from the database]")  # fmt: skip
@click.option("--rid", type=click.UUID, help="run id pairing start and finish [default: new]")
@click.option("--period", help="declare the check (slug only): expected every, e.g. 1h")
@click.option("--cron", help='declare the check: its schedule, e.g. "0 3 * * *"')
@click.option("--tz", help="declare the check: the time zone of --cron")
@click.option("--grace", help="declare the check: how late a ping may be, e.g. 10m")
@click.option("--max-runtime", help="declare the check: the longest a run may take")
@click.option("--misses", help="declare the check: missed periods in a row before an alert")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_wrapped(
    config_file: str | None, db: str | None, target: str, site_url: str | None,
    ping_key: str | None, rid: uuid.UUID | None, period: str | None, cron: str | None,
    tz: str | None, grace: str | None, max_runtime: str | None, misses: str | None,
    command: tuple[str, ...],
) -> None:  # fmt: skip
    """Run COMMAND, pinging the check at its start and with its exit status and output.

    The command's output passes through unchanged; its last Ping-Body-Limit bytes go with the
    final ping. Exits with the command's own exit code, also when the monitor is unreachable.
    With --period or --cron (and --tz, --grace, ...) a slug's check is created as declared on
    the first run, and follows the job when its schedule changes.
    """
    config = load(config_file, db=db, site_url=site_url and wrapper.site_root(site_url))
    stdout, stderr = wrapper.unbuffered(1), wrapper.unbuffered(2)
    try:
        url = wrapper.check_url(target, config.site_url, lambda: ping_key or local_ping_key(config))
    except wrapper.PingFailed as e:
        wrapper.warn(stderr, f"not reporting to the monitor: {e}")
        sys.exit(wrapper.run_command(command, wrapper.Tail(0), stdout, stderr))
    definition = {"period": period, "cron": cron, "tz": tz, "grace": grace,
                  "max_runtime": max_runtime, "misses": misses}  # fmt: skip
    pinger = wrapper.Pinger(wrapper.declaring(url, definition), str(rid or uuid.uuid4()))
    sys.exit(wrapper.run_job(command, pinger, stdout, stderr))
