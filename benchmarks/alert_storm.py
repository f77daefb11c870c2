"""An alert storm: how long 10,000 alerts take to deliver, and what they do to ping latency.

    python benchmarks/alert_storm.py [--checks 10000] [--rate 200]

`--checks` checks go down within the same second, each alerting a webhook on a loopback sink
in this process. Meanwhile a pinger sends `--rate` pings/s to other checks and records each
ping's latency. Printed: the time from the first deadline until the sink had every alert, and
ping p50/p99 in the quiet seconds before the storm against the seconds of the storm.
Targets: all delivered within 10 s; ping p99 during the storm less than 2x the quiet p99.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from harness import (
    Sink,
    config_with_webhook,
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
        with process(heartbeatd(db), port, config=config_with_webhook(work, sink)):
            until = first_deadline + 12
            latencies = asyncio.run(ping_steadily(port, uuids[args.checks :], args.rate, until))
            while len(sink.arrivals) < args.checks and time.time() < until + 30:
                time.sleep(0.1)
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


if __name__ == "__main__":
    main()
