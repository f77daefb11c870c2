"""What the benchmarks share: seeding a database, running the real daemon, pinging it steadily,
reading /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from heartbeatd.store import ByUuid, CheckDefinition, PingIn, Store

CHUNK = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(
    db: Path,
    count: int,
    period: float,
    grace: float,
    last_ping: list[float] | None = None,
) -> list[str]:
    """Create `count` checks through the Store; if `last_ping` is given, ping check i at it."""

    async def go() -> list[str]:
        async with Store(str(db), retention=100) as store:
            uuids: list[str] = []
            for start in range(0, count, CHUNK):
                batch = [
                    store.add_check(
                        CheckDefinition(
                            name=f"job {i}", slug=f"job-{i}", period=period, grace=grace
                        ),
                        time.time(),
                    )
                    for i in range(start, min(count, start + CHUNK))
                ]
                uuids += [check.uuid for check in await asyncio.gather(*batch)]
            if last_ping is not None:
                for start in range(0, count, CHUNK):
                    await asyncio.gather(
                        *(
                            store.record_ping(ByUuid(uuids[i]), SEED_PING, last_ping[i])
                            for i in range(start, min(count, start + CHUNK))
                        )
                    )
            return uuids

    return asyncio.run(go())


SEED_PING = PingIn(
    action="success",
    exit_status=None,
    rid=None,
    method="GET",
    scheme="http",
    remote_addr="127.0.0.1",
    ua="seed",
    body=b"",
    body_size=0,
)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is serving
    except OSError:
        return False
    return True


@contextmanager
def process(
    command: list[str],
    port: int,
    cpu: int | None = 0,
    config: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server pinned to one core, wait until it answers HTTP, SIGTERM it afterwards."""
    pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
    env = {**os.environ, "HEARTBEATD_LISTEN": f"127.0.0.1:{port}"}
    if config is not None:
        env["HEARTBEATD_CONFIG"] = str(config)
    # stderr goes to a file: an unread pipe fills up and stalls a daemon that logs a lot.
    log = tempfile.NamedTemporaryFile(prefix="hb-bench-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen([*pinned, *command], env=env, stderr=log)
    try:
        give_up = time.monotonic() + 60
        while not answers(f"http://127.0.0.1:{port}/ping/not-a-check"):
            if proc.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"{command} did not start: {Path(log.name).read_text()}")
            time.sleep(0.02)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def heartbeatd(db: Path) -> list[str]:
    return [sys.executable, "-m", "heartbeatd", "serve", "--db", str(db)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Sink:
    """The webhook receiver (sink.py) as a child process; arrivals are read from its file."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self._file = work / "arrivals"
        self._file.touch()
        script = Path(__file__).parent / "sink.py"
        self._proc = subprocess.Popen([sys.executable, str(script), str(self.port), self._file])
        while not answers(f"http://127.0.0.1:{self.port}/"):
            time.sleep(0.05)

    @property
    def arrivals(self) -> list[float]:
        return [float(line) for line in self._file.read_text().split()]

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait()


def config_with_webhook(work: Path, sink: Sink) -> Path:
    path = work / "heartbeatd.toml"
    path.write_text(
        f'[[notifier]]\nname = "sink"\ntype = "webhook"\ndefault = true\n'
        f'url = "http://127.0.0.1:{sink.port}/hook"\n'
    )
    return path


async def ping_steadily(
    port: int, uuids: list[str], rate: int, until: float
) -> list[tuple[float, float]]:
    """(sent at, latency ms) for a ping every 1/rate s, each on its own schedule."""
    results: list[tuple[float, float]] = []
    async with aiohttp.ClientSession() as session:

        async def one(uuid: str) -> None:
            sent = time.time()
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}/ping/{uuid}") as response:
                await response.read()
            results.append((sent, (time.perf_counter() - started) * 1000))

        tasks = []
        i = 0
        next_at = time.monotonic()
        while time.time() < until:
            tasks.append(asyncio.create_task(one(uuids[i % len(uuids)])))
            i += 1
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)
    return results
