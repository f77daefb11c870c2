"""How long the status pages take with a realistic database.

    python benchmarks/pages.py [--checks 1000] [--pings 100] [--requests 50]

Seeds `--checks` checks through the Store, each with `--pings` pings (start/finish pairs with
run ids, so durations and the run strip are real, some failures, bodies and user agents), runs
the real daemon (public UI on loopback, pinned to one core) and fetches the dashboard, its
poll (`/?partial=rows`) and check pages `--requests` times each, one request at a time.
Printed: p50/p95/max per page, in ms. Target: p95 <= 100 ms per page.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import free_port, heartbeatd, percentile, process, seed

from heartbeatd.store import ByUuid, PingIn, Store

START = 1_700_000_000.0
CHUNK = 5000


def ping(action: str, rid: str, body: bytes, exit_status: int | None = None) -> PingIn:
    return PingIn(
        action=action, exit_status=exit_status, rid=rid, method="POST", scheme="http",
        remote_addr="192.0.2.7", ua="runitor/1.2.0 (linux-amd64)", body=body,
        body_size=len(body),
    )  # fmt: skip


def add_pings(db: Path, uuids: list[str], count: int) -> None:
    """`count` pings per check: start/finish pairs an hour apart, one run in ten failing."""
    rng = random.Random(4)
    body = b"rsync: 1234 files, 56 MB\n" * 20

    async def go() -> None:
        async with Store(str(db), retention=count) as store:
            writes = []
            for i in range(count // 2):
                for n, check in enumerate(uuids):
                    rid = f"00000000-0000-4000-8000-{n:06d}{i:06d}"
                    at = START + i * 3600 + n
                    failed = rng.random() < 0.1
                    writes.append((check, ping("start", rid, b""), at))
                    finish = ping("fail" if failed else "success", rid, body, 1 if failed else 0)
                    writes.append((check, finish, at + rng.uniform(5, 600)))
            for begin in range(0, len(writes), CHUNK):
                await asyncio.gather(
                    *(
                        store.record_ping(ByUuid(u), p, at)
                        for u, p, at in writes[begin : begin + CHUNK]
                    )
                )

    asyncio.run(go())


def timings(url: str, count: int) -> list[float]:
    taken = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        taken.append((time.perf_counter() - started) * 1000)
    return taken


def report(name: str, taken: list[float]) -> None:
    print(
        f"{name:<22} p50 {percentile(taken, 50):6.1f} ms   p95 {percentile(taken, 95):6.1f} ms"
        f"   max {max(taken):6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        db = Path(work) / "pages.db"
        began = time.monotonic()
        uuids = seed(db, args.checks, period=3600.0, grace=600.0)
        add_pings(db, uuids, args.pings)
        print(f"seeded {args.checks} checks x {args.pings} pings in "
              f"{time.monotonic() - began:.1f} s")  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with process(heartbeatd(db), port):
            timings(f"{base}/", 3)  # warm up: templates compiled, pages cached by SQLite
            report("dashboard /", timings(f"{base}/", args.requests))
            report("poll /?partial=rows", timings(f"{base}/?partial=rows", args.requests))
            pages = [timings(f"{base}/checks/{u}", 1)[0] for u in uuids[: args.requests]]
            report("check page", pages)


if __name__ == "__main__":
    main()
