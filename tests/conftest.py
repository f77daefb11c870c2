"""Shared fixtures: a real SQLite file, the real app on a loopback port, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from heartbeatd.core.clock import ManualClock
from heartbeatd.core.config import Config, load_config
from heartbeatd.store import CheckDefinition, Store
from heartbeatd.watch.monitor import Monitor
from heartbeatd.web.app import create_app
from heartbeatd.web.keys import MONITOR, STORE
from heartbeatd.web.ui.auth import Passwords, hash_password

MakeConfig = Callable[..., Config]
# Tests log in hundreds of times: at the production cost (auth.SCRYPT_N, ~0.5 s a hash) that
# alone would take minutes. The production default is proven in test_attack_login.py.
TEST_SCRYPT_N = 2**10


def cheap_hash(password: str) -> str:
    """A password hash at the tests' cost, which start_daemon's apps take as current."""
    return hash_password(password, TEST_SCRYPT_N)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """A Config from TOML text (the config file's body) plus flag-style overrides."""

    def make(toml: str = "", **overrides: str) -> Config:
        path = None
        if toml:
            path = tmp_path / "heartbeatd.toml"
            path.write_text(toml)
        flags = {"db": str(tmp_path / "heartbeatd.db"), "listen": "127.0.0.1:0", **overrides}
        return load_config(path, {}, flags)

    return make


class Daemon:
    """The app under test and handles on its parts."""

    def __init__(self, client: TestClient[Any, Any], clock: ManualClock) -> None:
        self.client = client
        self.clock = clock

    @property
    def app(self) -> web.Application:
        return self.client.app  # type: ignore[return-value]

    @property
    def store(self) -> Store:
        return self.app[STORE]

    @property
    def monitor(self) -> Monitor:
        return self.app[MONITOR]

    async def add(self, name: str = "backup", **fields: Any) -> Any:
        fields.setdefault("slug", name)
        fields.setdefault("period", 60.0)
        fields.setdefault("grace", 10.0)
        return await self.store.add_check(CheckDefinition(name=name, **fields), self.clock.now())

    async def advance(self, seconds: float) -> None:
        """Let time pass and give the monitor its turn."""
        self.clock.advance(seconds)
        await self.monitor.settled()

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self.store._writer.run(lambda conn: conn.execute(sql, params).fetchall())


@pytest.fixture
async def start_daemon(
    make_config: MakeConfig, clock: ManualClock
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def start(toml: str = "", passwords: Passwords | None = None, **overrides: str) -> Daemon:
        passwords = passwords or Passwords(TEST_SCRYPT_N)
        app = create_app(make_config(toml, **overrides), clock, passwords)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Daemon(client, clock)

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def daemon(start_daemon: Callable[..., Any]) -> Daemon:
    return await start_daemon()


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., Any]]:
    """Make notifiers (`build(Kind, **options)`) and close them all after the test."""
    made: list[Any] = []

    def make(kind: type, **options: object) -> Any:
        notifier = kind("chat", options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.close()


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait for real I/O (a webhook reaching its sink) without a fixed sleep."""
    import asyncio

    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not await _truthy(condition()):
        if loop.time() > give_up:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def _truthy(value: Any) -> bool:
    import inspect

    return bool(await value) if inspect.isawaitable(value) else bool(value)


Invoke = Callable[..., Result]


@pytest.fixture
def hb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """`heartbeatd ARGS...` as a user runs it, in tmp_path: on tmp_path/heartbeatd.db, the file
    start_daemon's daemon uses too, with no HEARTBEATD_* settings leaking in from outside."""
    from heartbeatd.cli import cli

    monkeypatch.chdir(tmp_path)
    for name in ("HEARTBEATD_DB", "HEARTBEATD_CONFIG", "HEARTBEATD_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Any, list[str]]]:
    """A real `heartbeatd serve` process over 10 seeded checks, and their UUIDs; its log must
    end with no traceback and no ERROR line."""
    import asyncio

    from benchmarks.harness import seed
    from tests.test_crash import Daemon as Process  # imports this module: not at the top

    process = Process(tmp_path, "")
    uuids = await asyncio.to_thread(seed, process.db, 10, 3600.0, 3600.0)
    await process.start()
    yield process, uuids
    assert await asyncio.to_thread(process.stop) == 0
    log = process.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log
