"""The group-commit writer: what callers are told is what is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from heartbeatd.core.errors import Conflict, Unavailable
from heartbeatd.store import writer as writer_module
from heartbeatd.store.writer import Writer, connect


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[Writer, Path]]:
    path = tmp_path / "w.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (v TEXT)")
    writer = Writer(conn, asyncio.get_running_loop())
    yield writer, path
    await writer.close()


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")]


def insert(value: str) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,)).rowcount


async def test_concurrent_calls_are_all_on_disk_when_they_return(db) -> None:
    writer, path = db
    results = await asyncio.gather(*(writer.run(insert(str(i))) for i in range(500)))
    assert results == [1] * 500
    assert rows(path) == [str(i) for i in range(500)]


async def test_a_refusal_after_writing_undoes_only_that_call(db) -> None:
    writer, path = db

    def write_then_refuse(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('refused')")
        raise Conflict("no")

    outcomes = await asyncio.gather(
        writer.run(insert("a")), writer.run(write_then_refuse), writer.run(insert("b")),
        return_exceptions=True,
    )  # fmt: skip
    assert outcomes[0] == 1 and isinstance(outcomes[1], Conflict) and outcomes[2] == 1
    assert rows(path) == ["a", "b"]


async def test_a_lock_held_by_another_process_is_waited_for_without_blocking(db) -> None:
    writer, path = db
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pending = asyncio.ensure_future(writer.run(insert("after")))
    await asyncio.sleep(0.1)  # the loop keeps running meanwhile: this sleep returns
    assert not pending.done()
    other.execute("COMMIT")
    assert await pending == 1
    assert rows(path) == ["after"]
    other.close()


async def test_a_lock_held_too_long_answers_unavailable(db, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "LOCK_WAIT", 0.1)
    writer, path = db
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(Unavailable):
        await writer.run(insert("never"))
    other.execute("ROLLBACK")
    assert await writer.run(insert("later")) == 1
    other.close()


async def test_a_read_only_database_answers_unavailable_then_recovers(db) -> None:
    writer, path = db
    writer._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(Unavailable):
        await writer.run(insert("x"))
    writer._conn.execute("PRAGMA query_only = OFF")
    assert await writer.run(insert("y")) == 1
    assert rows(path) == ["y"]


async def test_a_bug_in_one_call_is_raised_to_its_caller_without_wedging_the_writer(db) -> None:
    writer, _ = db

    def broken(conn: sqlite3.Connection) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await writer.run(broken)
    assert await writer.run(insert("fine")) == 1


async def test_another_process_commit_moves_the_generation(db) -> None:
    writer, path = db
    before = writer.generation
    with sqlite3.connect(path) as other:
        other.execute("INSERT INTO t VALUES ('cli')")
    await writer.run(insert("daemon"))  # the batch notices under the write lock
    assert writer.generation > before


# -- one call's error is its own ----------------------------------------------------------


def write_then_fail(error: Exception) -> Callable[[sqlite3.Connection], None]:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('failed')")
        raise error

    return fn


@pytest.mark.parametrize(
    "failing",
    [
        insert("\ud800"),  # a lone surrogate: UnicodeEncodeError while binding, before writing
        write_then_fail(ZeroDivisionError()),  # a bug after the function had written
        write_then_fail(sqlite3.IntegrityError("constraint")),
    ],
    ids=["surrogate", "bug-after-write", "integrity-after-write"],
)
async def test_a_failing_call_fails_only_its_caller_not_its_batch(db, failing) -> None:
    writer, path = db
    outcomes = await asyncio.gather(
        writer.run(insert("a")), writer.run(failing), writer.run(insert("b")),
        return_exceptions=True,
    )  # fmt: skip
    assert outcomes[0] == 1 and outcomes[2] == 1, outcomes
    assert isinstance(outcomes[1], Exception) and not isinstance(outcomes[1], Unavailable)
    assert rows(path) == ["a", "b"]


async def test_a_failing_database_still_answers_unavailable_to_the_whole_batch(db) -> None:
    writer, path = db
    writer._conn.execute("PRAGMA query_only = ON")
    outcomes = await asyncio.gather(
        writer.run(insert("a")), writer.run(insert("b")), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    writer._conn.execute("PRAGMA query_only = OFF")
    assert rows(path) == []


async def test_a_foreground_call_is_not_committed_behind_queued_background_work(
    db, monkeypatch
) -> None:
    monkeypatch.setattr(writer_module, "BACKGROUND_BUDGET", 0.0)  # one background call a batch
    writer, path = db
    background = [
        asyncio.create_task(writer.run(insert(f"b{i}"), background=True)) for i in range(20)
    ]
    await asyncio.sleep(0)  # all twenty are queued
    await writer.run(insert("ping"))
    assert "ping" in rows(path) and len(rows(path)) < 21
    assert await asyncio.gather(*background) == [1] * 20
    assert [v for v in rows(path) if v != "ping"] == [f"b{i}" for i in range(20)]


async def test_only_batches_with_a_foreground_call_wait_for_the_disk(db) -> None:
    """A ping's commit is synced (synchronous=FULL, 2); a batch of background bookkeeping alone
    is not (NORMAL, 1): the next synced commit writes it to disk with its own."""
    writer, _ = db

    def level(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    assert await writer.run(level, background=True) == 1
    assert await writer.run(level) == 2
    together = await asyncio.gather(writer.run(level), writer.run(level, background=True))
    assert together == [2, 2]
    assert await writer.run(level, background=True) == 1
