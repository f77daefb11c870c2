"""Who may change things: `heartbeatd apikey …`, `heartbeatd user …`, and `heartbeatd audit`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from heartbeatd.cli.common import config_options, load, print_listing, with_store
from heartbeatd.core.clock import SystemClock

if TYPE_CHECKING:
    from heartbeatd.store import Store

MIN_PASSWORD = 8


@click.group()
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
    print_listing(
        with_store(config, lambda s: s.api_keys()), as_json, ("created", "last_used", "revoked"),
        "No API keys yet: heartbeatd apikey create --name NAME",
        ("ID", "NAME", "ACCESS", "CREATED", "LAST USED", "REVOKED"),
        lambda k: (str(k["id"]), k["name"], "read-only" if k["read_only"] else "read-write",
                   k["created"], k["last_used"] or "never", k["revoked"] or ""),
    )  # fmt: skip


@apikey.command("revoke")
@config_options
@click.argument("ref", metavar="NAME-or-ID")
def apikey_revoke(config_file: str | None, db: str | None, ref: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    config = load(config_file, db=db)
    name = with_store(config, lambda s: s.revoke_api_key(ref, SystemClock().now(), "cli"))
    click.echo(f"Revoked API key {name!r}.")


@click.command("audit")
@config_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def audit_log(config_file: str | None, db: str | None, limit: int, as_json: bool) -> None:
    """Changes, newest first: when, who, what, and the values before and after."""
    from heartbeatd.notify import iso

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
    """`: key old -> new, ...` for the fields an update changed; `: N failures` for a row
    counting a source's failed logins (one row a minute, store.record_login_failure)."""
    if before is None and after is not None and "failures" in after:
        return f": {after['failures']} failures"
    if before is None or after is None:
        return ""
    changed = [f"{key} {before.get(key)!r} -> {after[key]!r}"
               for key in after if before.get(key) != after[key]]  # fmt: skip
    return ": " + ", ".join(changed) if changed else ""


@click.group()
def user() -> None:
    """Users who can sign in to the web UI: admins change checks, viewers only read."""


ROLE_OPTION = click.option(
    "--role", type=click.Choice(["admin", "viewer"]),
    help="admin: changes checks; viewer: reads statuses, never sees a ping URL",
)  # fmt: skip
STDIN_OPTION = click.option(
    "--stdin", "from_stdin", is_flag=True, help="read the password from standard input"
)
LOCKED = "!"  # the password of a user who signs in only through the proxy's header


def _user_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A name the login form and the sign-in header can match: no outer spaces (the form
    strips them), not empty, at most limits.MAX_USER_NAME."""
    from heartbeatd.core.limits import MAX_USER_NAME

    if not value or value != value.strip() or len(value) > MAX_USER_NAME:
        raise click.BadParameter(f"1 to {MAX_USER_NAME} characters, no spaces around them")
    return value


@user.command("add")
@config_options
@click.argument("name", callback=_user_name)
@ROLE_OPTION
@STDIN_OPTION
@click.option("--no-password", is_flag=True, help="signs in only by [ui] trusted_header")
def user_add(config_file: str | None, db: str | None, name: str, role: str | None,
             from_stdin: bool, no_password: bool) -> None:  # fmt: skip
    """Add a user (an admin unless --role viewer)."""
    config = load(config_file, db=db)
    hashed = LOCKED if no_password else _new_password_hash(from_stdin)
    now = SystemClock().now()
    chosen = role or "admin"

    async def save(store: Store) -> None:
        await store.add_user(name, hashed, chosen, now)
        await store.record_audit(now, "cli", "user.add", name, None, {"role": chosen})

    with_store(config, save)
    click.echo(f"Added {chosen} {name!r}; sign in at {config.site_url}/login")


@user.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def user_list(config_file: str | None, db: str | None, as_json: bool) -> None:
    """List users: name, role, when added, and whether a password signs them in."""
    config = load(config_file, db=db)
    print_listing(
        with_store(config, lambda s: s.users()), as_json, ("created",),
        "No users yet: heartbeatd user add NAME", ("NAME", "ROLE", "ADDED", "SIGNS IN BY"),
        lambda u: (u["name"], u["role"], u["created"], "password" if u["password"] else "header"),
    )  # fmt: skip


@user.command("remove")
@config_options
@click.argument("name")
def user_remove(config_file: str | None, db: str | None, name: str) -> None:
    """Remove a user: their sessions end at once."""
    config = load(config_file, db=db)
    now = SystemClock().now()

    async def remove(store: Store) -> None:
        await store.remove_user(name)
        await store.record_audit(now, "cli", "user.remove", name)

    with_store(config, remove)
    click.echo(f"Removed user {name!r}.")


@user.command("set-password")
@config_options
@click.option("--user", "name", default="admin", show_default=True, callback=_user_name,
              help="the user to log in as")  # fmt: skip
@ROLE_OPTION
@STDIN_OPTION
def user_set_password(config_file: str | None, db: str | None, name: str, role: str | None,
                      from_stdin: bool) -> None:  # fmt: skip
    """Create a web UI user or change their password (which logs them out everywhere)."""
    config = load(config_file, db=db)
    hashed = _new_password_hash(from_stdin)
    now = SystemClock().now()

    async def save(store: Store) -> None:
        await store.set_password(name, hashed, now, role)
        await store.record_audit(now, "cli", "user.set-password", name)

    with_store(config, save)
    click.echo(f"Password set for {name!r}; log in at {config.site_url}/login")


def _new_password_hash(from_stdin: bool) -> str:
    """A password typed twice at a prompt, or one line of standard input, hashed."""
    from heartbeatd.core.limits import MAX_PASSWORD
    from heartbeatd.web.ui.auth import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise click.ClickException(
            f"the password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    return hash_password(password)
