"""Helpers every command shares: the config options, reading the config, running async work.

Heavy modules (the config loader and the store pull in aiohttp) are imported where they are
used, so a command that needs neither, like `heartbeatd --help`, starts without them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from heartbeatd.core import fields

if TYPE_CHECKING:
    from heartbeatd.core.config import Config
    from heartbeatd.core.model import Check
    from heartbeatd.store import Store

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
    from heartbeatd.core.config import load_config

    overrides = {key: value for key, value in flags.items() if value is not None}
    return load_config(Path(config_file) if config_file else None, os.environ, overrides)


def load(config_file: str | None, **flags: str | None) -> Config:
    from heartbeatd.core.config import ConfigError

    try:
        return read_config(config_file, **flags)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning heartbeatd's errors into one sentence on stderr."""
    from heartbeatd.core.errors import HeartbeatdError

    try:
        return asyncio.run(coro)
    except HeartbeatdError as e:
        raise click.ClickException(e.text) from None


def with_store(config: Config, action: Callable[[Store], Awaitable[T]]) -> T:
    from heartbeatd.store import Store

    async def go() -> T:
        async with Store(config.db, config.ping_retention) as store:
            return await action(store)

    return run(go())


def duration_option(value: str | None, param: str) -> float | None:
    if value is None:
        return None
    try:
        return fields.duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=param) from None


def ping_url(config: Config, check: Check) -> str:
    return f"{config.site_url}/ping/{check.uuid}"


def local_ping_key(config: Config) -> str | None:
    """The ping key from the local database, when there is one (never creates it)."""
    if not Path(config.db).is_file():
        return None
    try:
        return with_store(config, lambda s: s.ping_key())
    except (click.ClickException, OSError, sqlite3.Error):
        return None


def print_listing(
    items: list[dict[str, Any]], as_json: bool, times: tuple[str, ...], empty: str,
    header: tuple[str, ...], row: Callable[[dict[str, Any]], tuple[str, ...]],
) -> None:  # fmt: skip
    """What a `list` command prints: its `times` fields as ISO 8601, then the items as JSON, a
    sentence saying how to add one when there are none, or a table."""
    import json

    from heartbeatd.notify import iso

    for item in items:
        item.update({field: iso(item[field]) for field in times})
    if as_json:
        click.echo(json.dumps(items, indent=2))
    elif not items:
        click.echo(empty)
    else:
        print_table([header, *(row(item) for item in items)])


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Rows as left-aligned columns, the first row being the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
