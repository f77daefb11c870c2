"""Crash consistency: `heartbeatd serve` under steady ping load, SIGKILLed 20 times.

After every kill the database must hold every ping that was answered 200 (with its body), every
check's status must be the one its last flip set, and every flip that notifies must have its
outbox row. After the last restart every notification reaches the webhook sink; one arrives
twice only when a kill fell between sending it and recording it (the documented at-least-once
case), so a repeat is allowed only across a kill, never within one daemon's lifetime.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.harness import free_port, heartbeatd, seed
from tests.conftest import eventually

CHECKS = 100
WORKERS = 6
KILLS = 20
KINDS = ["", "", "", "", "", "/fail", "/start", "/log", "/0", "/3"]  # mostly success


@dataclass
class Load:
    """What the pinging clients were told: (uuid, body) of every ping answered 200."""

    base: str
    uuids: list[str]
    answered: set[tuple[str, bytes]] = field(default_factory=set)
    refused: int = 0  # connection errors and non-200 answers: the daemon was down
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, worker: int, rng: random.Random) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                uuid = rng.choice(self.uuids)
                body = f"w{worker} #{seq} {rng.getrandbits(64):016x} ü".encode()
                try:
                    async with session.post(
                        f"{self.base}/ping/{uuid}{rng.choice(KINDS)}", data=body
                    ) as response:
                        text = await response.text()
                    if response.status == 200 and text == "OK":
                        self.answered.add((uuid, body))
                        continue
                except (aiohttp.ClientError, TimeoutError):
                    pass
                self.refused += 1
                await asyncio.sleep(0.02)


class Sink:
    """Webhook receiver in this process: which daemon lifetime got each idempotency key."""

    def __init__(self) -> None:
        self.lifetime = 0
        self.arrivals: dict[str, list[int]] = defaultdict(list)

    async def hook(self, request: web.Request) -> web.Response:
        event = await request.json()
        self.arrivals[event["key"]].append(self.lifetime)
        return web.Response(text="ok")


class Daemon:
    """`heartbeatd serve` as a child process on a free loopback port, logging to a file."""

    def __init__(self, tmp_path: Path, config: str = "") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = tmp_path / "heartbeatd.db"
        self.log = tmp_path / "daemon.log"
        self.config = tmp_path / "heartbeatd.toml"
        self.config.write_text(f'listen = "127.0.0.1:{self.port}"\n{config}')
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*heartbeatd(self.db), "--config", str(self.config)],
                cwd=self.db.parent, env=env, stderr=log,
            )  # fmt: skip
        await eventually(self.answers, timeout=30)

    async def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.base}/ping/x") as response,
            ):
                return response.status == 404
        except aiohttp.ClientError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def read_db(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def lost_pings(db: Path, answered: set[tuple[str, bytes]]) -> set[tuple[str, bytes]]:
    stored = read_db(
        db, "SELECT c.uuid, p.body FROM pings p JOIN checks c ON c.id = p.check_id "
        "WHERE p.body IS NOT NULL",
    )  # fmt: skip
    return answered - {(uuid, bytes(body)) for uuid, body in stored}


def statuses_without_flip(db: Path) -> list[tuple[Any, ...]]:
    """Checks whose status is not what their last flip set, and flips that do not chain."""
    unexplained = read_db(
        db, "SELECT c.slug, c.status, (SELECT new_status FROM flips f WHERE f.check_id = c.id "
        "ORDER BY f.id DESC LIMIT 1) AS last FROM checks c "
        "WHERE coalesce(last, 'new') != c.status",
    )  # fmt: skip
    broken_chain = read_db(
        db, "SELECT f.id, f.old_status, (SELECT p.new_status FROM flips p WHERE p.check_id = "
        "f.check_id AND p.id < f.id ORDER BY p.id DESC LIMIT 1) AS before FROM flips f "
        "WHERE coalesce(before, 'new') != f.old_status",
    )  # fmt: skip
    return unexplained + broken_chain


def flips_without_outbox(db: Path) -> list[tuple[Any, ...]]:
    return read_db(
        db, "SELECT f.id, f.old_status, f.new_status FROM flips f "
        "WHERE (f.new_status = 'down' OR (f.old_status = 'down' AND f.new_status = 'up')) "
        "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.flip_id = f.id AND o.notifier = 'sink')",
    )  # fmt: skip


async def test_sigkill_under_load_loses_no_ping_flip_or_alert(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    rng = random.Random(7)
    sink = Sink()
    sink_app = web.Application()
    sink_app.router.add_post("/hook", sink.hook)
    sink_server = await aiohttp_server(sink_app)
    daemon = Daemon(
        tmp_path,
        f'ping_retention = 100000\n\n[[notifier]]\nname = "sink"\ntype = "webhook"\n'
        f'default = true\nurl = "http://127.0.0.1:{sink_server.port}/hook"\n',
    )
    uuids = await asyncio.to_thread(seed, daemon.db, CHECKS, 3600.0, 3600.0)
    load = Load(daemon.base, uuids)
    clients = [asyncio.create_task(load.client(w, random.Random(w))) for w in range(WORKERS)]
    try:
        for _ in range(KILLS):
            sink.lifetime += 1
            await daemon.start()
            await asyncio.sleep(rng.uniform(0.2, 0.9))
            daemon.kill()
            await asyncio.sleep(0.2)  # the sink reads what the dead daemon had already sent
            assert not lost_pings(daemon.db, load.answered)
            assert statuses_without_flip(daemon.db) == []
            assert flips_without_outbox(daemon.db) == []
        sink.lifetime += 1
        await daemon.start()
        await asyncio.sleep(0.5)
    finally:
        load.stop.set()
        await asyncio.gather(*clients)

    def all_sent() -> bool:
        return read_db(daemon.db, "SELECT count(*) FROM outbox WHERE state != 'sent'") == [(0,)]

    await eventually(all_sent, timeout=20)
    assert await asyncio.to_thread(daemon.stop) == 0
    lost = lost_pings(daemon.db, load.answered)
    found = len(load.answered) - len(lost)
    print(f"\npings answered {len(load.answered)} / found {found} / lost {len(lost)}")
    assert not lost
    assert len(load.answered) > 20 * KILLS  # the load was real
    assert statuses_without_flip(daemon.db) == []
    assert flips_without_outbox(daemon.db) == []

    outbox_keys = {f"heartbeatd-{i}" for (i,) in read_db(daemon.db, "SELECT id FROM outbox")}
    assert len(outbox_keys) > KILLS  # flips really happened
    assert set(sink.arrivals) == outbox_keys  # every notification arrived
    resent = {key: lives for key, lives in sink.arrivals.items() if len(lives) > 1}
    print(f"notifications {len(outbox_keys)}, resent after a kill {len(resent)}")
    for lives in resent.values():  # a repeat only from a later lifetime: a kill came between
        assert len(set(lives)) == len(lives), resent
    assert "Traceback" not in daemon.log.read_text()
