"""An alert storm: how long 10,000 alerts take to deliver, and what they do to ping latency.

    python benchmarks/alert_storm.py [--checks 10000] [--rate 200]

`--checks` checks go down within the same second, each alerting a webhook on a loopback sink
in this process. Meanwhile a pinger sends `--rate` pings/s to other checks and records each
ping's latency. Printed: the time from the first deadline until the sink had every alert, and
ping p50/p99 in the quiet seconds before the storm against the seconds of the storm, and the
daemon's CPU time per alert (beyond what the pinger costs it in quiet seconds).
Targets: all delivered within 10 s; ping p99 during the storm less than 2x the quiet p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from harness import (
    Sink,
    config_with_webhook,
    cpu_seconds,
    free_port,
    heartbeatd,
    percentile,
    ping_steadily,
    process,
    seed,
)

PERIOD, GRACE = 60.0, 5.0
PINGED_CHECKS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the sink and the pinger off the daemon's core (harness.py)
    with tempfile.TemporaryDirectory(prefix="hb-storm-") as tmp:
        work = Path(tmp)
        sink = Sink(work)
        db = work / "storm.db"
        first_deadline = time.time() + 20 + args.checks / 2000
        total = args.checks + PINGED_CHECKS
        # The first `checks` fall silent at once; the last PINGED_CHECKS are kept up by pings.
        last_pings = [first_deadline - PERIOD - GRACE + i / args.checks for i in range(total)]
        last_pings[args.checks :] = [time.time()] * PINGED_CHECKS
        uuids = seed(db, total, PERIOD, GRACE, last_pings)
        port = free_port()
        with process(heartbeatd(db), port, config=config_with_webhook(work, sink)) as daemon:
            until = first_deadline + 12
            latencies, (quiet_from, storm_from) = asyncio.run(
                pinging_through(
                    port, uuids[args.checks :], args.rate, first_deadline, until, daemon.pid
                )
            )
            while len(sink.arrivals) < args.checks and time.time() < until + 30:
                time.sleep(0.1)
            storm_to = (time.time(), cpu_seconds(daemon.pid))
        arrivals = sink.arrivals
        sink.close()
    quiet = [ms for sent, ms in latencies if sent < first_deadline - 0.5]
    last = max(arrivals) if arrivals else first_deadline
    storm = [ms for sent, ms in latencies if first_deadline <= sent <= last]
    print(f"{args.checks} checks down within one second; pinger at {args.rate}/s on 100 others")
    print(f"  alerts at the sink: {len(arrivals)}, the last {last - first_deadline:.2f} s "
          "after the first deadline")  # fmt: skip
    for label, values in (("quiet", quiet), ("storm", storm)):
        if values:
            print(f"  ping latency {label}: p50 {percentile(values, 50):.1f} ms, "
                  f"p99 {percentile(values, 99):.1f} ms over {len(values)} pings")  # fmt: skip
    if quiet and storm:
        print(f"  p99 storm / quiet = {percentile(storm, 99) / percentile(quiet, 99):.2f}")
    quiet_rate = (storm_from[1] - quiet_from[1]) / (storm_from[0] - quiet_from[0])
    extra = storm_to[1] - storm_from[1] - quiet_rate * (storm_to[0] - storm_from[0])
    print(f"  daemon CPU: {quiet_rate:.0%} of a core when quiet; "
          f"{extra / max(len(arrivals), 1) * 1e6:.0f} us more per alert")  # fmt: skip


async def pinging_through(
    port: int, uuids: list[str], rate: int, first_deadline: float, until: float, pid: int
) -> tuple[list[tuple[float, float]], tuple[tuple[float, float], ...]]:
    """ping_steadily, and (time, the daemon's CPU seconds) taken 10 s before the first
    deadline (start-up is over) and at it."""

    async def at(moment: float) -> tuple[float, float]:
        await asyncio.sleep(moment - time.time())
        return time.time(), cpu_seconds(pid)

    samples = asyncio.gather(at(first_deadline - 10), at(first_deadline))
    latencies = await ping_steadily(port, uuids, rate, until)
    return latencies, tuple(await samples)


if __name__ == "__main__":
    main()
