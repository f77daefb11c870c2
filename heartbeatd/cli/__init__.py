"""The heartbeatd command: serve, manage checks, send pings.

Check commands open the database directly, so they work whether or not the daemon runs; a
running daemon notices their commits within half a second (writer.py watches data_version).

One module per command group. They import the daemon's heavy parts (aiohttp, jinja2, the
store) inside the commands that use them: `heartbeatd run` starts before every wrapped job,
and `heartbeatd --help` should not wait for a web server it will not start.
"""

from __future__ import annotations

import click

from heartbeatd import __version__
from heartbeatd.cli.backup import backup_command, restore_command
from heartbeatd.cli.checks import check
from heartbeatd.cli.imports import import_jobs
from heartbeatd.cli.keys import apikey, audit_log, user
from heartbeatd.cli.notify import notify
from heartbeatd.cli.ping import ping_key, send_ping
from heartbeatd.cli.run import run_wrapped
from heartbeatd.cli.serve import serve
from heartbeatd.cli.silences import silence
from heartbeatd.cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="heartbeatd")
def cli() -> None:
    """heartbeatd: a self-hosted heartbeat monitor for cron jobs and other scheduled work."""


for command in (serve, check, notify, ping_key, send_ping, run_wrapped, apikey, audit_log, user,
                status, backup_command, restore_command, import_jobs, silence):  # fmt: skip
    cli.add_command(command)
