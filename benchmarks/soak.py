"""A soak: the real daemon under mixed load for N minutes; does anything leak, lose or lie?

    python benchmarks/soak.py [--minutes 10] [--rate 200] [--steady 200] [--flappers 20]

Load, from this process (pinned to core 1; the daemon to core 0):
- `--steady` checks (period 1 h) pinged at random with every kind of ping (success, start then
  success with the same rid, exit 0, log, bodies of up to 4 kB); they must never go down.
- `--flappers` checks (period 2 s, grace 1 s) pinged every half second for 10 s, then left
  silent for 6 s (they go down), and so on, some ending their run with /fail: checks going
  down and up all along, each flip notified.
- the status page `/` and `/metrics` read once a second each.
Notifiers: a webhook to a loopback sink (sink.py, its own process), one to a port where nothing
listens (down the whole time: retried with backoff) and one to a target that takes 3 s to answer.

Printed: pings/s, p50/p99 ping and page latency, the daemon's RSS and open file descriptors
at the start (after a warm-up, below) and at the end of N minutes more (with its connections
at the end: the load's pool, and sends under way to notifier targets), the database
size, pings answered vs found on disk (lost must be 0), false alerts (a timeout flip although
an answered ping should have moved the deadline, or any down flip of a steady check: must be
0), and notifications written vs delivered to the sink.

The warm-up is two minutes (a fifth of the run when shorter) because every part of the load must
have run before the baseline: flappers first go down 13-29 s in, and the dead target's retries
reach their longer backoffs only after a minute or two. Measured with the flapping checks
alone (so flips and the three notifiers), the first minute after a 30 s warm-up added 2.8 MB
and the later ones 0.4, 0.1, 0.04 MB; pings alone or pages alone stayed flat from 30 s on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import tempfile
import time
import uuid as uuidlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from harness import Sink, free_port, heartbeatd, percentile, process, rss_mb, seed

FLAP_PERIOD, FLAP_GRACE = 2.0, 1.0
ON, OFF = 10.0, 6.0  # a flapper is pinged for ON seconds, then silent for OFF
SLOW = 3.0  # seconds the slow webhook target takes
WARM_UP = 120.0  # seconds of load before the baseline (see the module docstring)


@dataclass
class Tally:
    answered: set[tuple[str, bytes]] = field(default_factory=set)
    # (sent, answered) wall times of each check's answered pings
    answered_at: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    ping_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


async def ping(
    session: aiohttp.ClientSession, base: str, tally: Tally, uuid: str, suffix: str, body: bytes
) -> None:
    started, sent = time.perf_counter(), time.time()
    try:
        async with session.post(f"{base}/ping/{uuid}{suffix}", data=body) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as e:
        tally.errors[type(e).__name__] += 1
        return
    if response.status != 200 or text != "OK":
        tally.errors[f"HTTP {response.status}"] += 1
        return
    tally.ping_ms.append((time.perf_counter() - started) * 1000)
    tally.answered.add((uuid, body))
    tally.answered_at[uuid].append((sent, time.time()))


def body_for(rng: random.Random) -> bytes:
    return f"{uuidlib.uuid4()} ".encode() + os.urandom(rng.randrange(0, 2048)).hex().encode()


async def steady_load(
    session: aiohttp.ClientSession, base: str, uuids: list[str], rate: float, until: float,
    tally: Tally,
) -> None:  # fmt: skip
    rng = random.Random(1)
    tasks: set[asyncio.Task[None]] = set()
    next_at = time.monotonic()
    while time.monotonic() < until:
        uuid = rng.choice(uuids)
        kind = rng.random()
        if kind < 0.1:  # a wrapped run: start, then success with the same rid
            rid = str(uuidlib.uuid4())
            await ping(session, base, tally, uuid, f"/start?rid={rid}", body_for(rng))
            suffix = f"?rid={rid}"
        else:
            suffix = rng.choice(["", "", "", "/0", "/log"])
        task = asyncio.create_task(ping(session, base, tally, uuid, suffix, body_for(rng)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*tasks)


async def flapper(
    session: aiohttp.ClientSession, base: str, uuid: str, fails: bool, until: float, tally: Tally
) -> None:
    rng = random.Random(uuid)
    await asyncio.sleep(rng.uniform(0, ON + OFF))
    while time.monotonic() < until:
        phase_end = time.monotonic() + ON
        while time.monotonic() < min(phase_end, until):
            await ping(session, base, tally, uuid, "", body_for(rng))
            await asyncio.sleep(0.5)
        if fails:
            await ping(session, base, tally, uuid, "/fail", body_for(rng))
        await asyncio.sleep(OFF)


async def pages(session: aiohttp.ClientSession, base: str, until: float, tally: Tally) -> None:
    while time.monotonic() < until:
        for path in ("/", "/metrics"):
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
            if response.status == 200:
                tally.page_ms.append((time.perf_counter() - started) * 1000)
            else:
                tally.errors[f"{path} HTTP {response.status}"] += 1
        await asyncio.sleep(1)


async def slow_target(port: int) -> web.AppRunner:
    async def answer_slowly(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(SLOW)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", answer_slowly)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connections(pid: int, port: int) -> tuple[int, int]:
    """The daemon's TCP connections: (from clients to `port`, out to notifier targets).

    Most of its descriptors are these, and both kinds are bounded (the load's connection pool;
    the sends under way at once), so the figure tells a leak from a pool filling up."""
    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed since it was listed
            sockets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    served = outgoing = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if f"socket:[{inode}]" not in sockets or state == "0A":  # 0A: the listening socket
            continue
        if int(local.rpartition(":")[2], 16) == port:
            served += 1
        else:
            outgoing += 1
    return served, outgoing


async def soak(args: argparse.Namespace, base: str, pid: int, steady: list[str],
               flappers: list[str], slow_port: int) -> tuple[Tally, dict[str, float]]:  # fmt: skip
    tally = Tally()
    slow = await slow_target(slow_port)
    warm_up = min(WARM_UP, args.minutes * 12)
    until = time.monotonic() + warm_up + args.minutes * 60
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=64)
    figures: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        load = [
            steady_load(session, base, steady, args.rate, until, tally),
            pages(session, base, until, tally),
            *(flapper(session, base, u, i % 4 == 0, until, tally) for i, u in enumerate(flappers)),
        ]
        tasks = [asyncio.create_task(job) for job in load]
        await asyncio.sleep(warm_up)
        figures["rss_start"], figures["fds_start"] = rss_mb(pid), open_fds(pid)
        minute = 0
        while not all(task.done() for task in tasks):  # RSS each minute: a plateau or a leak
            await asyncio.wait(tasks, timeout=60)
            minute += 1
            figures[f"rss_minute_{minute}"] = rss_mb(pid)
        await asyncio.gather(*tasks)
        figures["rss_end"], figures["fds_end"] = rss_mb(pid), open_fds(pid)
        figures["served_end"], figures["outgoing_end"] = connections(
            pid, int(base.rpartition(":")[2])
        )
        await asyncio.sleep(FLAP_PERIOD + FLAP_GRACE + 2)  # the last flips and deliveries
    await slow.cleanup()
    return tally, figures


def false_alerts(db: Path, steady: set[str], tally: Tally) -> list[str]:
    """Down flips no silence explains: a steady check's, or a timeout although a ping sent
    less than period + grace before it was answered before it (recorded between the two, so
    it should have moved the deadline past the flip)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT c.uuid, f.at, f.reason FROM flips f JOIN checks c ON c.id = f.check_id "
            "WHERE f.new_status = 'down'"
        ).fetchall()
    wrong = []
    for uuid, at, reason in rows:
        if uuid in steady:
            wrong.append(f"steady check {uuid} went down ({reason})")
        elif reason == "timeout":
            window = at - FLAP_PERIOD - FLAP_GRACE + 0.001
            if any(sent > window and done < at for sent, done in tally.answered_at[uuid]):
                wrong.append(f"{uuid} went down at {at:.2f} despite a ping before it")
    return wrong


def lost(db: Path, answered: set[tuple[str, bytes]]) -> int:
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT c.uuid, p.body FROM pings p JOIN checks c ON c.id = p.check_id"
        ).fetchall()
    return len(answered - {(u, bytes(b)) for u, b in stored if b is not None})


def notifications(db: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT notifier, state, count(*) FROM outbox GROUP BY 1, 2")
        return {(notifier, state): n for notifier, state, n in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="steady pings per second")
    parser.add_argument("--steady", type=int, default=200)
    parser.add_argument("--flappers", type=int, default=20)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})

    with tempfile.TemporaryDirectory(prefix="hb-soak-") as tmp:
        work = Path(tmp)
        db = work / "soak.db"
        sink = Sink(work)
        slow_port, dead_port = free_port(), free_port()
        steady = seed(db, args.steady, 3600.0, 3600.0)
        config = work / "soak.toml"
        config.write_text(
            "ping_retention = 100000\n\n"
            + "".join(
                f'[[check]]\nname = "flap {i}"\nslug = "flap-{i}"\nperiod = "2s"\ngrace = "1s"\n\n'
                for i in range(args.flappers)
            )
            + "".join(
                f'[[notifier]]\nname = "{name}"\ntype = "webhook"\ndefault = true\n'
                f'url = "http://127.0.0.1:{port}/hook"\ntimeout = "10s"\n\n'
                for name, port in (("sink", sink.port), ("dead", dead_port), ("slow", slow_port))
            )
        )
        port = free_port()
        with process(heartbeatd(db), port, config=config) as daemon:
            with sqlite3.connect(db) as conn:
                flappers = [u for (u,) in conn.execute("SELECT uuid FROM checks WHERE slug "
                                                        "LIKE 'flap-%'")]  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            started = time.monotonic()
            tally, figures = asyncio.run(soak(args, base, daemon.pid, steady, flappers, slow_port))
            took = time.monotonic() - started
        arrivals = len(sink.arrivals)
        sink.close()
        size = sum(p.stat().st_size for p in work.glob("soak.db*"))
        wrong = false_alerts(db, set(steady), tally)
        outbox = notifications(db)
        missing = lost(db, tally.answered)

    print(f"soak: {args.minutes:g} min, {args.steady} steady + {args.flappers} flapping checks")
    print(f"pings answered     {len(tally.answered)} ({len(tally.answered) / took:.0f}/s)")
    print(f"ping latency       p50 {percentile(tally.ping_ms, 50):.1f} ms, "
          f"p99 {percentile(tally.ping_ms, 99):.1f} ms")  # fmt: skip
    print(f"page latency       p50 {percentile(tally.page_ms, 50):.1f} ms, "
          f"p99 {percentile(tally.page_ms, 99):.1f} ms ({len(tally.page_ms)} loads)")  # fmt: skip
    print(f"daemon RSS         {figures['rss_start']:.1f} MB at start, "
          f"{figures['rss_end']:.1f} MB at end "
          f"({(figures['rss_end'] / figures['rss_start'] - 1) * 100:+.1f}%)")  # fmt: skip
    minutes = [f"{v:.1f}" for k, v in figures.items() if k.startswith("rss_minute_")]
    print(f"  each minute      {' '.join(minutes)} MB")
    print(f"open fds           {figures['fds_start']:.0f} at start, "
          f"{figures['fds_end']:.0f} at end ({figures['served_end']:.0f} connections from "
          f"the load, {figures['outgoing_end']:.0f} to notifier targets)")  # fmt: skip
    print(f"database size      {size / 2**20:.1f} MB")
    print(f"request errors     {dict(tally.errors) or 'none'}")
    print(f"pings lost         {missing}")
    print(f"false alerts       {len(wrong)}")
    for line in wrong[:10]:
        print(f"  {line}")
    written = sum(n for (name, _), n in outbox.items() if name == "sink")
    print(f"notifications      sink: {written} written, {arrivals} delivered; "
          f"dead: {dict((s, n) for (name, s), n in outbox.items() if name == 'dead')}; "
          f"slow: {dict((s, n) for (name, s), n in outbox.items() if name == 'slow')}")  # fmt: skip
    if missing or wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
