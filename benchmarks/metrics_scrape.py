"""What a Prometheus scrape of a large install costs, and what it does to ping latency.

    python benchmarks/metrics_scrape.py [--checks 10000] [--rate 200] [--seconds 5]

`--checks` checks, each pinged once, in the real daemon. A pinger sends `--rate` pings/s for
`--seconds` quietly, then as long again while a scraper fetches /metrics back to back (a far
heavier load than one scrape every 15 s). Printed: the scrape's time and size, and ping
p50/p99 in the quiet phase against the scraping phase. Target: scraping p99 < 2x quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from harness import free_port, heartbeatd, percentile, ping_steadily, process, seed

PERIOD, GRACE = 86400.0, 3600.0


async def scrape_until(port: int, until: float) -> list[tuple[float, int]]:
    """(seconds, bytes) of each /metrics fetch, back to back until `until`."""
    taken: list[tuple[float, int]] = []
    async with aiohttp.ClientSession() as session:
        while time.time() < until:
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                size = len(await response.read())
            taken.append((time.perf_counter() - started, size))
    return taken


async def measure(port: int, uuids: list[str], rate: int, seconds: float) -> None:
    quiet_until = time.time() + seconds
    quiet = await ping_steadily(port, uuids, rate, quiet_until)
    until = time.time() + seconds
    busy, scrapes = await asyncio.gather(
        ping_steadily(port, uuids, rate, until), scrape_until(port, until)
    )
    times = [took * 1000 for took, _ in scrapes]
    print(f"  /metrics: {len(scrapes)} scrapes of {scrapes[0][1] / 1e6:.1f} MB, "
          f"p50 {percentile(times, 50):.0f} ms, max {max(times):.0f} ms")  # fmt: skip
    for label, results in (("quiet", quiet), ("scraping", busy)):
        values = [ms for _, ms in results]
        print(f"  ping latency {label}: p50 {percentile(values, 50):.1f} ms, "
              f"p99 {percentile(values, 99):.1f} ms over {len(values)} pings")  # fmt: skip
    ratio = percentile([ms for _, ms in busy], 99) / percentile([ms for _, ms in quiet], 99)
    print(f"  p99 scraping / quiet = {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb-scrape-") as tmp:
        db = Path(tmp) / "scrape.db"
        uuids = seed(db, args.checks, PERIOD, GRACE, [time.time()] * args.checks)
        port = free_port()
        print(f"{args.checks} checks; pinger at {args.rate}/s")
        with process(heartbeatd(db), port):
            asyncio.run(measure(port, uuids, args.rate, args.seconds))


if __name__ == "__main__":
    main()
