"""`heartbeatd backup` and `heartbeatd restore`: a consistent copy of the database, and putting
one back without ever leaving a half-written database in place.

The copy uses SQLite's online backup API from its own connection. It reads every page inside
one read transaction, which in WAL mode never blocks the daemon's writes, so the copy is the
database as of one commit, taken while pings keep arriving. Both commands write into a temporary
file beside their target, check it, fsync it and rename it over the target: a crash or a full
disk leaves the old file, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from heartbeatd.core.errors import HeartbeatdError
from heartbeatd.store import DatabaseFacts, database_facts
from heartbeatd.store.migrations import MIGRATIONS

# Every connection to a WAL database holds a shared lock on this byte of the -shm file for as
# long as it is open (SQLite's unix VFS, "DMS" slot: (22 + 8) * 4 + 8); an exclusive lock on it
# is granted only when no other process has the database open.
SHM_DMS_BYTE = 128


class BackupError(HeartbeatdError):
    status = 400
    text = "backup failed"


def backup(db: Path, dest: Path) -> DatabaseFacts:
    """Copy the database `db` (in use or not) to `dest`; returns what the copy holds."""
    if not db.is_file():
        raise BackupError(f"no database at {db}")
    if dest.resolve() == db.resolve():
        raise BackupError(f"{dest} is the database itself; name another file")
    return _copy_verified(db, dest)


def restore(source: Path, db: Path) -> DatabaseFacts:
    """Replace the database `db` with the backup `source`; the old one is kept beside it as
    `<db>.before-restore`. Refuses while another process has `db` open: a running daemon
    would go on writing into the replaced file and lose everything it is told."""
    if not source.is_file():
        raise BackupError(f"no backup at {source}")
    if source.resolve() == db.resolve():
        raise BackupError(f"{source} is the database itself")
    if in_use(db):
        raise BackupError(f"{db} is in use (is heartbeatd running?); stop it, then restore")
    facts = _facts_of(source)
    if not facts.is_heartbeatd:
        raise BackupError(f"{source} is not a heartbeatd database")
    if facts.version > len(MIGRATIONS):
        raise BackupError(
            f"{source} has schema version {facts.version}, newer than this heartbeatd knows "
            f"({len(MIGRATIONS)}); upgrade heartbeatd first"
        )
    if facts.problems:
        raise BackupError(f"{source} fails its integrity check: {facts.problems[0]}")
    if db.exists():
        _copy_verified(db, before_restore_path(db))
    for leftover in (_sidecar(db, "-wal"), _sidecar(db, "-shm")):
        # The old database's log must not be replayed into the restored one; its content is
        # in the .before-restore copy.
        leftover.unlink(missing_ok=True)
    return _copy_verified(source, db)


def before_restore_path(db: Path) -> Path:
    return db.with_name(db.name + ".before-restore")


def in_use(db: Path) -> bool:
    """Whether another process (the daemon, a CLI command) has the database open."""
    try:
        fd = os.open(_sidecar(db, "-shm"), os.O_RDWR)
    except FileNotFoundError:
        return False  # no wal-index: nobody has the database open in WAL mode
    except OSError as e:
        raise BackupError(f"cannot tell whether {db} is in use: {e.strerror}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def _copy_verified(source: Path, dest: Path) -> DatabaseFacts:
    """Copy `source` to `dest` through a checked temporary file and an atomic rename."""
    with _temporary_beside(dest) as temporary:
        with (
            contextlib.closing(_connect(source)) as reader,
            contextlib.closing(sqlite3.connect(temporary)) as writer,
        ):
            try:
                reader.backup(writer)
                # One self-contained file: the copy needs no -wal beside it to be whole.
                writer.execute("PRAGMA journal_mode = DELETE")
                facts = database_facts(writer)
            except sqlite3.DatabaseError as e:
                raise BackupError(f"cannot copy {source}: {e}") from None
        if not facts.is_heartbeatd:
            raise BackupError(f"{source} is not a heartbeatd database")
        if facts.problems:
            raise BackupError(
                f"the copy of {source} fails its integrity check: {facts.problems[0]}"
            )
        _fsync(temporary)
        os.replace(temporary, dest)
    _fsync(dest.parent)
    return facts


def _facts_of(path: Path) -> DatabaseFacts:
    try:
        with contextlib.closing(_connect(path)) as conn:
            return database_facts(conn)
    except sqlite3.DatabaseError as e:
        raise BackupError(f"{path} is not a heartbeatd database ({e})") from None


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=5.0)


@contextlib.contextmanager
def _temporary_beside(dest: Path) -> Iterator[Path]:
    """A fresh file in `dest`'s directory (so the rename stays on one file system), removed
    unless it was renamed into place."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as e:
        raise BackupError(f"cannot write beside {dest}: {e.strerror}") from None
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
    finally:
        for path in (temporary, _sidecar(temporary, "-journal")):
            path.unlink(missing_ok=True)


def _sidecar(db: Path, suffix: str) -> Path:
    return db.with_name(db.name + suffix)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
