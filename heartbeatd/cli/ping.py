"""`heartbeatd ping-key` and `heartbeatd ping`: the instance's ping key, and a ping by hand."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import click

from heartbeatd.cli import client as wrapper
from heartbeatd.cli.common import config_options, load, local_ping_key, with_store


@click.command("ping-key")
@config_options
@click.option("--rotate", is_flag=True, help="replace the key; old slug URLs stop working")
def ping_key(config_file: str | None, db: str | None, rotate: bool) -> None:
    """Print the instance's ping key, used in /ping/<ping-key>/<slug> URLs."""
    config = load(config_file, db=db)
    key = with_store(config, lambda s: s.rotate_ping_key() if rotate else s.ping_key())
    click.echo(key)
    click.echo(f"Slug URLs: {config.site_url}/ping/{key}/<slug>", err=True)


@click.command("ping")
@config_options
@click.argument("target", metavar="URL-UUID-or-SLUG")
@click.option("--start", "action", flag_value="start", help="signal that the job started")
@click.option("--fail", "action", flag_value="fail", help="signal that the job failed")
@click.option("--log", "action", flag_value="log", help="send a log message only")
@click.option("--exit", "exit_code", type=click.IntRange(0, 255), help="report an exit status")
@click.option("--rid", help="run id (a UUID) pairing start and finish")
@click.option("--body", help="text to send as the ping body ('-' reads stdin)")
@click.option("--ping-key", "key", envvar="HEARTBEATD_PING_KEY", metavar="KEY",
              help="for a slug: the instance's ping key [env HEARTBEATD_PING_KEY; default: "
                   "read from the database]")  # fmt: skip
def send_ping(
    config_file: str | None, db: str | None, target: str, action: str | None,
    exit_code: int | None, rid: str | None, body: str | None, key: str | None,
) -> None:  # fmt: skip
    """Ping a check by its URL, UUID or slug (handy for testing a setup)."""
    config = load(config_file, db=db)
    try:
        url = wrapper.check_url(target, config.site_url, lambda: key or local_ping_key(config))
    except wrapper.PingFailed as e:
        raise click.ClickException(str(e)) from None
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
