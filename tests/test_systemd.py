"""Under systemd: the real `heartbeatd serve` speaks sd_notify to a socket the test owns."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from heartbeatd.daemon.sdnotify import Systemd
from tests.test_end_to_end import free_port

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "heartbeatd.service"


class NotifySocket:
    """The service manager's end: a datagram socket collecting what the daemon says."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.received: list[dict[str, str]] = []

    async def next(self, timeout: float = 20.0) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append(message)
        return message

    async def until(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """The first message with `key`, skipping others (watchdog pings)."""
        while True:
            message = await self.next(timeout)
            if key in message:
                return message


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    receiver = NotifySocket(f"@heartbeatd-test-{uuid.uuid4().hex}")  # abstract: no path limits
    yield receiver
    receiver.sock.close()


async def status_of(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def test_serve_tells_systemd_ready_alive_reloading_and_stopping(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    port = free_port()
    config = tmp_path / "heartbeatd.toml"
    config.write_text(f'listen = "127.0.0.1:{port}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    env |= {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "heartbeatd", "serve", "--config", str(config)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = await notify_socket.until("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"] == "watching 0 checks"
        unknown = "00000000-0000-4000-8000-000000000000"
        assert await status_of(f"http://127.0.0.1:{port}/ping/{unknown}") == 404  # serving

        loop = asyncio.get_running_loop()
        started = loop.time()
        pings = 0
        while pings < 5:
            pings += "WATCHDOG" in await notify_socket.next(timeout=2)
        assert loop.time() - started < 2  # every 100 ms (half of WATCHDOG_USEC)

        daemon.send_signal(signal.SIGHUP)
        reloading = await notify_socket.until("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert (await notify_socket.until("READY"))["STATUS"] == "watching 0 checks"

        daemon.send_signal(signal.SIGTERM)
        assert (await notify_socket.until("STOPPING"))["STOPPING"] == "1"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, errors
    assert "Traceback" not in errors
    assert "config reloaded" in errors


def test_watchdog_is_off_unless_meant_for_this_process() -> None:
    base = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    assert Systemd.from_environ(dict(base)).watchdog_interval == 15.0
    mine = dict(base, WATCHDOG_PID=str(os.getpid()))
    assert Systemd.from_environ(mine).watchdog_interval == 15.0
    assert Systemd.from_environ(dict(base, WATCHDOG_PID="1")).watchdog_interval is None
    assert Systemd.from_environ({"NOTIFY_SOCKET": "/run/x"}).watchdog_interval is None


def test_the_variables_are_not_passed_on_to_commands_heartbeatd_runs() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1", "PATH": "/bin"}
    Systemd.from_environ(environ)
    assert environ == {"PATH": "/bin"}


def test_outside_systemd_notifying_does_nothing() -> None:
    systemd = Systemd.from_environ({})
    systemd.ready("watching 0 checks")  # no socket, no error
    assert systemd.start_watchdog() is None


def test_a_path_socket_receives_the_message(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        systemd = Systemd.from_environ({"NOTIFY_SOCKET": str(path)})
        systemd.ready("watching 3 checks")
        systemd.close()
        assert receiver.recv(4096) == b"READY=1\nSTATUS=watching 3 checks"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_file_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this venv's heartbeatd.
    heartbeatd = Path(sys.executable).parent / "heartbeatd"
    unit = tmp_path / "heartbeatd.service"
    text = UNIT.read_text()
    unit.write_text(text.replace("/opt/heartbeatd/.venv/bin/heartbeatd", str(heartbeatd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "heartbeatd.service" not in result.stderr, result.stderr  # no warning about it
