"""The database cannot take writes (disk full, read-only, locked): pings answer 503, never OK,
and so does /api/v3/status/, with the reason, so a load balancer sees it (security issue, 10).

The daemon stays up, logs one line when writes start failing (not one per ping) and one when
they work again, and recovers by itself. The full disk is a real one: a 2 MB tmpfs mounted for
the test (root in CI); SQLite's max_page_count stands in where mounting is not permitted.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.store import meta as store_meta
from heartbeatd.store import writer as writer_module
from tests.conftest import Daemon

StartDaemon = Callable[..., Any]
FAILED = "database write failed"
RECOVERED = "database writes work again"


class FullDisk:
    """Fills and frees the file system (or page budget) under the daemon's database."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind
        self.filler = directory / "filler"
        self.daemon: Daemon | None = None

    def fill(self) -> None:
        if self.kind == "max_page_count":
            assert self.daemon is not None
            conn = self.daemon.store._writer._conn
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")
            return
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self) -> None:
        if self.kind == "max_page_count":
            assert self.daemon is not None
            self.daemon.store._writer._conn.execute("PRAGMA max_page_count = 1073741823")
            return
        self.filler.unlink()


def mount_tmpfs(directory: Path) -> bool:
    directory.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture(params=["tmpfs", "max_page_count"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullDisk]:
    directory = tmp_path / "small"
    if request.param == "tmpfs" and not mount_tmpfs(directory):
        pytest.skip("mounting a tmpfs is not permitted here (needs root)")
    if request.param == "max_page_count":
        directory.mkdir()
    yield FullDisk(directory, request.param)
    unmount = ["umount", str(directory)]
    if request.param == "tmpfs" and subprocess.run(unmount, capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def log_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "heartbeatd.store" and text in r.message)


async def ping(daemon: Daemon, uuid: str, body: bytes) -> int:
    response = await daemon.client.post(f"/ping/{uuid}", data=body)
    text = await response.text()
    assert (response.status, text) in ((200, "OK"), (503, "service unavailable"))
    return response.status


def stored_bodies(db: Path) -> set[bytes]:
    with sqlite3.connect(db) as conn:
        return {bytes(b) for (b,) in conn.execute("SELECT body FROM pings WHERE body IS NOT NULL")}


async def status_of(daemon: Daemon) -> tuple[int, str]:
    """What a load balancer polling /api/v3/status/ sees."""
    response = await daemon.client.get("/api/v3/status/")
    return response.status, await response.text()


READ_ONLY = (503, "database cannot take writes: attempt to write a readonly database")


async def test_a_full_disk_answers_503_logs_once_and_recovers(
    disk: FullDisk, start_daemon: StartDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "heartbeatd.store")
    db = disk.directory / "heartbeatd.db"
    daemon = disk.daemon = await start_daemon(db=str(db))
    check = await daemon.add()
    answered: list[bytes] = []
    try:
        disk.fill()
        statuses = []
        for i in range(400):  # the WAL may still have room for a few
            body = f"ping {i} ".encode() * 2000
            statuses.append(await ping(daemon, check.uuid, body))
            if statuses[-1] == 200:
                answered.append(body)
            elif statuses.count(503) >= 50:
                break
        assert statuses.count(503) >= 50, "the disk never filled up"
        assert statuses[-50:] == [503] * 50  # once full, never a false OK
        assert log_lines(caplog, FAILED) == 1  # one line, not fifty
        assert "database or disk is full" in caplog.text  # and it says why
        assert (await daemon.client.get("/")).status == 200  # still serving

        disk.free()
        for i in range(20):
            body = f"after {i}".encode()
            assert await ping(daemon, check.uuid, body) == 200  # by itself, at once
            answered.append(body)
        assert log_lines(caplog, RECOVERED) == 1
    finally:
        await daemon.client.close()
    assert set(answered) <= stored_bodies(db)


async def test_a_read_only_database_answers_503_and_recovers(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "heartbeatd.store")
    check = await daemon.add()
    conn = daemon.store._writer._conn
    conn.execute("PRAGMA query_only = ON")  # root ignores file modes; this is the same refusal
    answers = [await ping(daemon, check.uuid, b"x") for _ in range(30)]
    assert answers == [503] * 30
    assert log_lines(caplog, FAILED) == 1
    conn.execute("PRAGMA query_only = OFF")
    assert await ping(daemon, check.uuid, b"back") == 200
    assert log_lines(caplog, RECOVERED) == 1


async def test_a_database_locked_by_another_process_answers_503_and_recovers(
    daemon: Daemon, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "LOCK_WAIT", 0.3)
    caplog.set_level(logging.INFO, "heartbeatd.store")
    check = await daemon.add()
    other = sqlite3.connect(daemon.store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # as a stuck `sqlite3` shell would
        pings = [ping(daemon, check.uuid, f"locked {i}".encode()) for i in range(20)]
        waiting = asyncio.gather(*pings)
        page = await daemon.client.get("/")  # reads go on while writes wait for the lock
        assert page.status == 200
        assert await waiting == [503] * 20
        assert await ping(daemon, check.uuid, b"still locked") == 503
        assert log_lines(caplog, FAILED) == 1
        assert "locked by another process" in caplog.text
        locked = (503, "database cannot take writes: database is locked by another process")
        assert await status_of(daemon) == locked  # after LOCK_WAIT, as a ping
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await status_of(daemon) == (200, "OK")
    assert await ping(daemon, check.uuid, b"unlocked") == 200
    assert log_lines(caplog, RECOVERED) == 1


async def test_status_answers_503_with_why_while_writes_fail_and_200_once_they_work(
    daemon: Daemon,
) -> None:
    check = await daemon.add()
    assert await status_of(daemon) == (200, "OK")
    conn = daemon.store._writer._conn
    conn.execute("PRAGMA query_only = ON")
    assert await ping(daemon, check.uuid, b"x") == 503
    assert [await status_of(daemon) for _ in range(3)] == [READ_ONLY] * 3
    conn.execute("PRAGMA query_only = OFF")
    assert await status_of(daemon) == (200, "OK")  # at once, no ping needed
    assert await ping(daemon, check.uuid, b"back") == 200


async def test_status_of_an_idle_daemon_tries_a_write_to_see_a_read_only_database(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_meta, "PROBE_EVERY", 3600.0)
    assert await status_of(daemon) == (200, "OK")
    daemon.store._writer._conn.execute("PRAGMA query_only = ON")
    assert await status_of(daemon) == (200, "OK")  # trusts the commit it saw within PROBE_EVERY
    monkeypatch.setattr(store_meta, "PROBE_EVERY", 0.0)  # as if a quiet second had passed
    assert await status_of(daemon) == READ_ONLY


async def test_status_cannot_make_the_daemon_write_while_writes_work(daemon: Daemon) -> None:
    """status/ needs no key: a flood of it must not become a flood of commits and fsyncs."""
    conn, loop = daemon.store._writer._conn, asyncio.get_running_loop()
    before, started = conn.total_changes, loop.time()
    assert [await status_of(daemon) for _ in range(200)] == [(200, "OK")] * 200
    seconds = loop.time() - started
    assert conn.total_changes - before <= 1 + seconds / store_meta.PROBE_EVERY


async def test_status_answers_503_on_a_full_disk_and_200_once_there_is_room(
    disk: FullDisk, start_daemon: StartDaemon
) -> None:
    if disk.kind == "max_page_count":
        pytest.skip("a page budget still lets a small write reuse a page: status rightly says OK")
    daemon = disk.daemon = await start_daemon(db=str(disk.directory / "heartbeatd.db"))
    check = await daemon.add()
    try:
        disk.fill()
        for i in range(400):  # until the WAL has no room left either
            if await ping(daemon, check.uuid, f"ping {i} ".encode() * 2000) == 503:
                break
        full = (503, "database cannot take writes: database or disk is full")
        assert [await status_of(daemon) for _ in range(3)] == [full] * 3
        disk.free()
        assert await status_of(daemon) == (200, "OK")
    finally:
        await daemon.client.close()
