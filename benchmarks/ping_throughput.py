"""Durable pings per second: heartbeatd against a bare aiohttp "OK" server, in the same run.

    python benchmarks/ping_throughput.py [--seconds 20] [--checks 1000] [--connections 50 500]

For each connection count, wrk (pinned to core 1) drives the bare server, then heartbeatd (each
pinned to core 0) with GET /ping/<uuid> spread over `--checks` checks. Printed: requests/s,
p50/p99 latency, heartbeatd's RSS, the ratio, and durability: every ping answered 2xx must be
counted in the database afterwards (n_pings summed over checks; lost must be 0).
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import free_port, heartbeatd, process, rss_mb, seed

HERE = Path(__file__).parent
LUA = """
local uuids = {}
for line in io.lines(os.getenv("UUIDS")) do uuids[#uuids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/ping/" .. uuids[(i % #uuids) + 1])
end
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    rate: float
    p50: float
    p99: float
    answered: int


def wrk(port: int, connections: int, seconds: int, lua: Path, uuids: Path) -> Run:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"UUIDS": str(uuids)},
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)s", out)
    total, took = int(done[1]), float(done[2])
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    answered = total - (int(bad[1]) if bad else 0)
    return Run(
        rate=answered / took,  # wrk's Requests/sec counts refusals (a 429 or 503) too
        p50=to_ms(latency["50"]),
        p99=to_ms(latency["99"]),
        answered=answered,
    )


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * UNITS[unit]


def pings_on_disk(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT coalesce(sum(n_pings), 0) FROM checks").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--connections", type=int, nargs="+", default=[50, 500])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    seeded = work / "seeded.db"
    uuids = seed(seeded, args.checks, period=86400, grace=3600)
    (work / "uuids").write_text("\n".join(uuids) + "\n")
    (work / "walk.lua").write_text(LUA)
    print(
        f"{args.checks} checks, {args.rounds} rounds of {args.seconds}s per server, "
        "wrk -t1 on core 1, servers on core 0"
    )
    print(
        f"{'conns':>5} {'server':<10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'RSS MB':>6}  durability"
    )
    summary = []
    for connections in args.connections:
        ratios = []
        for round_ in range(args.rounds):
            base = measure_bare(connections, args.seconds, work)
            ours = measure_heartbeatd(connections, args.seconds, work, seeded, round_)
            ratios.append(ours.rate / base.rate)
        summary.append((connections, statistics.median(ratios), ratios))
    for connections, median, ratios in summary:
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"{connections:>5} conns: heartbeatd/bare median ratio {median:.2f} ({each})")
    shutil.rmtree(work)


def measure_bare(connections: int, seconds: int, work: Path) -> Run:
    port = free_port()
    with process([sys.executable, str(HERE / "bare_ok.py")], port):
        base = wrk(port, connections, seconds, work / "walk.lua", work / "uuids")
    print(f"{connections:>5} {'bare':<10} {base.rate:>8.0f} {base.p50:>7.2f} {base.p99:>7.2f}")
    return base


def measure_heartbeatd(
    connections: int,
    seconds: int,
    work: Path,
    seeded: Path,
    round_: int,
) -> Run:
    db = work / f"run-{connections}-{round_}.db"
    shutil.copy(seeded, db)
    port = free_port()
    with process(heartbeatd(db), port) as daemon:
        ours = wrk(port, connections, seconds, work / "walk.lua", work / "uuids")
        rss = rss_mb(daemon.pid)
    found = pings_on_disk(db)
    lost = max(0, ours.answered - found)
    print(
        f"{connections:>5} {'heartbeatd':<10} {ours.rate:>8.0f} {ours.p50:>7.2f} "
        f"{ours.p99:>7.2f} {rss:>6.1f}  answered {ours.answered}, on disk {found}, "
        f"lost {lost}"
    )
    return ours


if __name__ == "__main__":
    main()
