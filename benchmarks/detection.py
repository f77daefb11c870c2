"""How fast heartbeatd notices silence, and what a large database costs to start and hold.

    python benchmarks/detection.py [--checks 10000] [--big 100000]

1. `--checks` checks whose deadlines all fall within the same second, in the real daemon with a
   webhook notifier pointed at a loopback sink in this process. Printed: p50/p99/max of
   (flip written - deadline), the time until every check had flipped, and until every alert
   reached the sink. Targets: p99 <= 100 ms, all flipped within 1 s, all delivered within 10 s.
2. A database of `--big` armed checks: time from starting the daemon to its first HTTP answer
   (target <= 2 s), and the daemon's RSS with `--checks` and with `--big` checks (targets
   <= 60 MB and <= 150 MB).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from harness import (
    Sink,
    answers,
    config_with_webhook,
    free_port,
    heartbeatd,
    percentile,
    process,
    rss_mb,
    seed,
)

PERIOD, GRACE = 60.0, 5.0


def timeout_flips(db: Path) -> list[tuple[float, float]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT at, noticed FROM flips WHERE reason = 'timeout'").fetchall()


def detection(work: Path, count: int) -> float:
    sink = Sink(work)
    db = work / "detect.db"
    first_deadline = time.time() + 15 + count / 2000  # after seeding and start-up
    last_pings = [first_deadline - PERIOD - GRACE + i / count for i in range(count)]
    seed(db, count, PERIOD, GRACE, last_pings)
    port = free_port()
    with process(heartbeatd(db), port, config=config_with_webhook(work, sink)) as daemon:
        if time.time() > first_deadline - 1:
            raise SystemExit("seeding took too long; the deadlines passed before start-up")
        time.sleep(max(0.0, first_deadline + 1.5 - time.time()))
        rss = rss_mb(daemon.pid)
        give_up = time.time() + 30
        while len(sink.arrivals) < count and time.time() < give_up:
            time.sleep(0.1)
    arrivals = sink.arrivals
    sink.close()
    flips = timeout_flips(db)
    lags = [(noticed - at) * 1000 for at, noticed in flips]
    print(f"{count} checks due within one second; {len(flips)} went down")
    print(f"  flip written - deadline: p50 {percentile(lags, 50):.1f} ms, "
          f"p99 {percentile(lags, 99):.1f} ms, max {max(lags):.1f} ms")  # fmt: skip
    print(f"  all flipped {max(n for _, n in flips) - first_deadline:.2f} s after the first "
          f"deadline (the last deadline is {(count - 1) / count:.2f} s after it)")  # fmt: skip
    if arrivals:
        print(f"  alerts delivered to the loopback webhook: {len(arrivals)}, the last "
              f"{max(arrivals) - first_deadline:.2f} s after the first deadline")  # fmt: skip
    print(f"  daemon RSS with {count} checks: {rss:.1f} MB")
    return rss


def startup(work: Path, count: int) -> None:
    db = work / "big.db"
    began = time.time()
    seed(db, count, 86400.0, 3600.0, [began] * count)
    print(f"seeded {count} armed checks in {time.time() - began:.1f} s")
    port = free_port()
    started = time.monotonic()
    with process(heartbeatd(db), port, cpu=None) as daemon:
        serving = time.monotonic() - started
        time.sleep(1)
        assert answers(f"http://127.0.0.1:{port}/ping/x")
        print(f"  start-up of a {count}-check database to serving: {serving:.2f} s")
        print(f"  daemon RSS with {count} checks: {rss_mb(daemon.pid):.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb-detect-") as work:
        detection(Path(work), args.checks)
        startup(Path(work), args.big)


if __name__ == "__main__":
    main()
