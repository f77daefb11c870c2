"""Group commit: one thread owns the write connection and commits many callers' work at once.

Every write in heartbeatd is a function `fn(conn) -> result` handed to `Writer.run`. The thread
takes everything queued, runs each function in its own savepoint inside one transaction, commits
once (one fsync for the whole batch) and only then resolves the callers' futures: an "OK" for a
ping is sent after its row is on disk, and concurrent pings share the commit's cost.

Why not aiosqlite for writes: it pays a thread hop per statement and a commit per call
(BENCHMARKS.md: ~1,700 pings/s at one commit per ping); batching in this thread keeps the loop
free and durable pings in the ten-thousands. Reads still go through aiosqlite (store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from heartbeatd.errors import HeartbeatdError, Unavailable

T = TypeVar("T")
log = logging.getLogger("heartbeatd.store")

MAX_BATCH = 4096
_STOP = object()


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every heartbeatd connection shares."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer OK; group commit pays one fsync per batch.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        on_external_change: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._on_external_change = on_external_change
        self._data_version = self._read_data_version()
        self._failing = False
        self._thread = threading.Thread(target=self._work, name="heartbeatd-writer", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next write transaction; return once it is committed."""
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, fut))
        return await fut

    async def close(self) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._conn.close()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._notice_external_change()
                continue
            batch = []
            item = first
            while item is not _STOP:
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit_batch(batch)
                self._notice_external_change()
            if item is _STOP:
                return

    def _commit_batch(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> None:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut in batch:
                conn.execute("SAVEPOINT call")
                try:
                    result = fn(conn)
                except HeartbeatdError as e:  # the caller's own refusal: undo just its part
                    conn.execute("ROLLBACK TO call")
                    outcomes.append((fut, None, e))
                else:
                    outcomes.append((fut, result, None))
                conn.execute("RELEASE call")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            self._report_failure(e)
            outcomes = [(fut, None, Unavailable()) for _, fut in batch]
        except BaseException as e:  # a bug in one function must not wedge every caller
            self._rollback()
            log.exception("write failed")
            outcomes = [(fut, None, e) for _, fut in batch]
        else:
            if self._failing:
                log.info("database writes work again")
                self._failing = False
        self._call_soon(_resolve, outcomes)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand a result to the loop; after the loop has closed there is no one left to tell."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _report_failure(self, error: sqlite3.Error) -> None:
        """One log line when writes start failing, not one per ping."""
        if not self._failing:
            log.error("database write failed, answering 503 until it works: %s", error)
            self._failing = True

    def _read_data_version(self) -> int:
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return -1

    def _notice_external_change(self) -> None:
        """data_version on this connection moves only when another process (the CLI) commits."""
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            if self._on_external_change is not None:
                self._call_soon(self._on_external_change)


def _resolve(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    for fut, result, error in outcomes:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
