"""`heartbeatd backup` and `heartbeatd restore`: copy the database out, and back in."""

from __future__ import annotations

from pathlib import Path

import click

from heartbeatd.cli.common import config_options, load


@click.command("backup")
@config_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(config_file: str | None, db: str | None, file: Path) -> None:
    """Copy the database to FILE; safe while the daemon serves (SQLite's online backup)."""
    from heartbeatd.store.backup import BackupError, backup

    config = load(config_file, db=db)
    try:
        facts = backup(Path(config.db), file)
    except BackupError as e:
        raise click.ClickException(e.text) from None
    click.echo(f"Backed up {config.db} to {file}: {facts.checks} checks, {facts.pings} pings.")


@click.command("restore")
@config_options
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore_command(config_file: str | None, db: str | None, file: Path) -> None:
    """Replace the database with the backup FILE (stop the daemon first).

    The current database is kept as <db>.before-restore.
    """
    from heartbeatd.store.backup import BackupError, before_restore_path, restore

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
