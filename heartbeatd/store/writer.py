"""Group commit: every write is a function run in a shared transaction, one commit per batch.

Every write in heartbeatd is a function `fn(conn) -> result` handed to `Writer.run`. Functions
queued during one turn of the event loop run together, each on the row it just read, inside one
transaction that is committed once (one fsync for the whole batch); only then are the callers'
futures resolved, so an "OK" for a ping is sent after its row is on disk and concurrent pings
share the commit's cost.

Why in the loop thread: sqlite3 releases the GIL around every statement, so a writer thread must
win the GIL back after each one while the loop is busy with requests, waiting up to the switch
interval (5 ms) each time; under load that starved it (BENCHMARKS.md; measured here too: 4,300
pings/s in a thread against more than 6,000 inline). A statement costs microseconds and a WAL commit
one fsync, so running them inline blocks the loop far less than the handoffs did. A lock held by
another process is not waited for inline: the batch is retried from a timer, and after
LOCK_WAIT seconds its callers get 503. Reads go through aiosqlite (store.py).

Bulk work that nobody is waiting on (the flips of an alert storm, the outbox's bookkeeping) is
queued as *background*: each batch runs every foreground call but only BACKGROUND_BUDGET seconds
of background ones, so a ping is never committed behind thousands of outbox updates; the rest
goes into the following batches, in the order it was queued.

A batch of background calls alone is committed without waiting for the disk (synchronous =
NORMAL): nobody is waiting on it, and the next batch that carries a ping syncs the write-ahead
log up to and including it. What a power cut could take back is only what is redone anyway: an
expired check that lost its flip goes down again after restart, and an alert whose delivery
lost its record is sent again (the documented at-least-once). A killed process loses nothing:
the operating system has the log. In an alert storm this spares an fsync (~130 us of CPU,
~0.4 ms of waiting) for each of thousands of bookkeeping batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from heartbeatd.core.errors import HeartbeatdError, Unavailable

T = TypeVar("T")
log = logging.getLogger("heartbeatd.store")

LOCK_WAIT = 5.0  # how long a batch waits for another process's write lock before 503
LOCK_RETRY = 0.02
POLL_EXTERNAL = 0.5  # how often to look for other processes' commits (the CLI's)
# Background calls per batch: at least one, then more while the batch is younger than this.
# The batch runs inline, so this bounds how long a ping arriving meanwhile waits for the loop.
# Measured (benchmarks/alert_storm.py): a flip costs ~60 us, an outbox update ~10 us; 1 ms
# here gave a storm's pings a p99 twice the quiet one, 0.3 ms (with the pieces below) 1.3x.
BACKGROUND_BUDGET = 0.0003

Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


# The database holds the ping key and the badge secret: the owner's alone, whatever the umask.
PRIVATE = 0o600
NOT_OWNERS = 0o077


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection with the settings every heartbeatd connection shares."""
    keep_private(Path(path))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer OK; group commit pays one fsync per batch.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def keep_private(db: Path) -> None:
    """Create the database file owner-only before SQLite would create it by the umask (0644
    under the usual 022), and take group and other bits off an existing one and its -wal and
    -shm. SQLite gives a -wal or -shm it creates the database file's own mode, so they follow.
    The umask is no defence here: systemd's UMask covers only the unit, not a CLI run, a
    container or a hand-started daemon."""
    with contextlib.suppress(OSError):  # SQLite's own open then says what is wrong
        os.close(os.open(db, os.O_RDONLY | os.O_CREAT, PRIVATE))
    for path in (db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & NOT_OWNERS:
                os.chmod(path, mode & ~NOT_OWNERS)
                log.warning("%s was open to group or others (mode %o); made it %o", path, mode,
                            mode & ~NOT_OWNERS)  # fmt: skip
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("%s is open to group or others and cannot be made private: %s", path, e)


class _UndoNeeded(Exception):
    """A function failed after writing, so its writes must be undone."""


# A function's error is its caller's alone unless it says the database itself is failing (disk
# full, read-only, I/O error: OperationalError and kin), which every call of the batch would meet.
# A broken constraint, a value sqlite3 cannot bind (a lone surrogate) or a bug is the caller's.
_CALLERS_SQLITE_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)


def _is_callers_own(error: Exception) -> bool:
    return not isinstance(error, sqlite3.DatabaseError) or isinstance(error, _CALLERS_SQLITE_ERRORS)


class _Locked(Exception):
    """Another connection holds the write lock."""


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        on_external_change: Callable[[], None] | None = None,
    ) -> None:
        conn.execute("PRAGMA busy_timeout = 0")  # never wait for a lock inside the loop
        self._conn = conn
        self._loop = loop
        self._queue: list[Call] = []
        self._background: deque[Call] = deque()
        self._flush_handle: asyncio.Handle | None = None
        self._locked_since: float | None = None
        self._on_external_change = on_external_change
        self._data_version = self._read_data_version()
        # Moves on whenever the database may differ from what callers remember of it: after a
        # rollback and after another process commits. store.py keys its ping cache on it.
        self.generation = 0
        self.failure: str | None = None  # why writes fail; None again once a batch commits
        self._committed_at = -float("inf")  # loop time of the last commit
        self._closed = False
        self._committing = False
        self._synchronous = "FULL"  # as connect() leaves it
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="heartbeatd-commit")
        self._poller = loop.call_later(POLL_EXTERNAL, self._poll_external_change)

    async def run(self, fn: Callable[[sqlite3.Connection], T], background: bool = False) -> T:
        """Run `fn` in the next write transaction; return once it is committed.

        `background` work may wait for later batches (see the module docstring). It keeps its
        order among background work, but a foreground call queued after it may run first.
        """
        if self._closed:
            raise Unavailable()
        fut: asyncio.Future[T] = self._loop.create_future()
        (self._background if background else self._queue).append((fn, fut))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return await fut

    async def close(self) -> None:
        """Commit what is queued, then close the connection."""
        self._poller.cancel()
        while self._pending() or self._committing:  # a batch waiting for a lock: LOCK_WAIT
            if self._flush_handle is None and not self._committing:
                self._flush()
            await asyncio.sleep(LOCK_RETRY)
        self._closed = True
        self._committer.shutdown()
        self._conn.close()

    def _flush(self) -> None:
        """Run the queued functions now, then commit them in the committer thread.

        The commit's fsync is the one slow step, so it runs off the loop, which goes on
        reading requests meanwhile; their writes make the next batch once this one is on disk.
        """
        self._flush_handle = None
        if self._committing or not self._pending():
            return
        batch, self._queue = self._queue, []
        try:
            outcomes = self._run_batch_safely(batch)
        except _Locked:
            self._retry_later(batch)
            return
        self._locked_since = None
        if not self._conn.in_transaction:  # nothing to commit: every outcome is an error
            self._finish(outcomes)
            return
        self._committing = True
        commit = self._loop.run_in_executor(self._committer, self._conn.execute, "COMMIT")
        commit.add_done_callback(functools.partial(self._committed, outcomes))

    def _committed(self, outcomes: list[Outcome], commit: asyncio.Future[Any]) -> None:
        self._committing = False
        error = commit.exception()
        if error is not None:
            self._rollback()
            self._report_failure(str(error))
            outcomes = [(fut, None, Unavailable()) for fut, _, _ in outcomes]
        else:
            self._committed_at = self._loop.time()
            if self.failure is not None:
                log.info("database writes work again")
                self.failure = None
        self._finish(outcomes)

    def committed_within(self, seconds: float) -> bool:
        """Whether a batch committed in the last `seconds` and none has failed since."""
        return self.failure is None and self._loop.time() - self._committed_at < seconds

    def _finish(self, outcomes: list[Outcome]) -> None:
        _resolve(outcomes)
        if self._pending() and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _pending(self) -> bool:
        return bool(self._queue or self._background)

    def _retry_later(self, batch: list[Call]) -> None:
        now = self._loop.time()
        if self._locked_since is None:
            self._locked_since = now
        if now - self._locked_since > LOCK_WAIT:
            self._report_failure("database is locked by another process")
            _resolve([(fut, None, Unavailable()) for _, fut in batch])
            self._locked_since = None
            return
        self._queue[:0] = batch
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(LOCK_RETRY, self._flush)

    def _run_batch_safely(self, batch: list[Call]) -> list[Outcome]:
        """_run_batch, with every failure turned into outcomes (and the transaction closed).

        The background calls a batch takes are appended to `batch`, so a redo, a retry after a
        lock and a failure reach them like the others.
        """
        try:
            try:
                return self._run_batch(batch, careful=False, background=self._background)
            except _UndoNeeded:
                # A function failed after it had written: redo the batch with a savepoint per
                # function so only its part is undone. Savepoints cost ~40% of ping throughput,
                # and refusals happen before any write, so this path is rare.
                self._rollback()
                return self._run_batch(batch, careful=True)
        except sqlite3.OperationalError as e:
            self._rollback()
            if _is_locked(e):
                raise _Locked from e
            self._report_failure(str(e))
            return [(fut, None, Unavailable()) for _, fut in batch]
        except sqlite3.Error as e:
            self._rollback()
            self._report_failure(str(e))
            return [(fut, None, Unavailable()) for _, fut in batch]
        except Exception as e:  # a bug outside the functions (the change hook) must not wedge us
            self._rollback()
            log.exception("write failed")
            return [(fut, None, e) for _, fut in batch]

    def _run_batch(
        self, batch: list[Call], careful: bool, background: deque[Call] | None = None
    ) -> list[Outcome]:
        """Run every function in one open transaction; a caller's own error is its outcome."""
        conn = self._conn
        outcomes: list[Outcome] = []
        started = time.perf_counter()
        self._set_synchronous("FULL" if batch else "NORMAL")  # batch: the foreground calls
        conn.execute("BEGIN IMMEDIATE")
        self._notice_external_change()  # under the write lock, so nothing can change after
        for fn, fut in _with_background(batch, background, started):
            if careful:
                conn.execute("SAVEPOINT call")
            changes = conn.total_changes
            try:
                result = fn(conn)
            except Exception as e:
                if not _is_callers_own(e):
                    raise
                if careful:
                    conn.execute("ROLLBACK TO call")
                elif conn.total_changes != changes:
                    raise _UndoNeeded from e
                if not isinstance(e, HeartbeatdError):
                    log.error("write failed: %s", e, exc_info=e)
                outcomes.append((fut, None, e))
            else:
                outcomes.append((fut, result, None))
            if careful:
                conn.execute("RELEASE call")
        return outcomes

    def _set_synchronous(self, level: str) -> None:
        """Whether the next commit waits for the disk (see the module docstring)."""
        if level != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _rollback(self) -> None:
        self.generation += 1
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _report_failure(self, error: str) -> None:
        """One log line when writes start failing, not one per ping."""
        if self.failure is None:
            log.error("database write failed, answering 503 until it works: %s", error)
        self.failure = error

    def _read_data_version(self) -> int:
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return -1

    def _poll_external_change(self) -> None:
        if not self._committing:  # the connection is the committer thread's until it is done
            self._notice_external_change()
        self._poller = self._loop.call_later(POLL_EXTERNAL, self._poll_external_change)

    def _notice_external_change(self) -> None:
        """data_version on this connection moves only when another process (the CLI) commits."""
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            self.generation += 1
            if self._on_external_change is not None:
                self._on_external_change()


def _with_background(
    batch: list[Call], background: deque[Call] | None, started: float
) -> Iterator[Call]:
    """`batch`'s calls, then background calls moved into it: at least one, then more until
    BACKGROUND_BUDGET has passed since `started`."""
    foreground = len(batch)
    yield from batch[:foreground]
    while background and (
        len(batch) == foreground or time.perf_counter() - started < BACKGROUND_BUDGET
    ):
        batch.append(background.popleft())
        yield batch[-1]


def _is_locked(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _resolve(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    for fut, result, error in outcomes:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
