"""SIGHUP: the config file is applied without a restart, and a broken one changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from heartbeatd.core.config import Config, load_config
from heartbeatd.daemon.reload import Reloader
from tests.conftest import Daemon, eventually
from tests.test_end_to_end import free_port


def check(slug: str, period: str, grace: str = "10s") -> str:
    return (
        f'\n[[check]]\nname = "{slug}"\nslug = "{slug}"\nperiod = "{period}"\ngrace = "{grace}"\n'
    )


# Every kind of field, so an unchanged reload proves the comparison sees them as unchanged.
KEPT = """
[[check]]
name = "Kept"
slug = "kept"
cron = "30 2 * * *"
tz = "Europe/Berlin"
grace = "1h"
tags = ["backup", "prod"]
desc = "nightly"
misses = 2
max_runtime = "2h"
methods = "POST"
notifiers = ["log"]
"""


def webhook(url: str) -> str:
    return f'\n[[notifier]]\nname = "hook"\ntype = "webhook"\nurl = "{url}"\ndefault = true\n'


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "heartbeatd.toml"


@pytest.fixture
def reread(tmp_path: Path, config_file: Path) -> Callable[[], Config]:
    """Read the file as `heartbeatd serve` does: with the same flags as the daemon's (conftest)."""
    flags = {"db": str(tmp_path / "heartbeatd.db"), "listen": "127.0.0.1:0"}
    return lambda: load_config(config_file, {}, flags)


async def reload_with(
    daemon: Daemon, config_file: Path, reread: Callable[[], Config], toml: str
) -> bool:
    config_file.write_text(toml)
    return await Reloader(daemon.app, reread).reload()


async def uuids(daemon: Daemon) -> dict[str, str]:
    return {c.slug: c.uuid for c in await daemon.store.list_checks()}


async def test_reload_adds_removes_and_changes_checks_keeping_uuids(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = await start_daemon(KEPT + check("dropped", "1m"))
    before = await uuids(daemon)
    caplog.set_level(logging.INFO, "heartbeatd.reload")

    assert await reload_with(daemon, config_file, reread, KEPT + check("new", "1h"))
    after = await uuids(daemon)
    assert set(after) == {"kept", "new"}
    assert [r.getMessage() for r in caplog.records] == [
        "removed check dropped (no longer in the config file)",
        "added check new from the config file",
        "config reloaded; 2 checks in the file",
    ]
    assert after["kept"] == before["kept"]
    caplog.clear()
    assert await reload_with(daemon, config_file, reread, KEPT + check("new", "1h"))
    assert await uuids(daemon) == after  # the new check keeps its UUID too
    assert [r.getMessage() for r in caplog.records] == ["config reloaded; 2 checks in the file"]
    ping = await daemon.client.get(f"/ping/{before['dropped']}")
    assert ping.status == 404


async def test_a_shorter_period_re_arms_the_deadline_earlier(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = await start_daemon(check("job", "5m"))
    uuid = (await uuids(daemon))["job"]
    assert (await daemon.client.get(f"/ping/{uuid}")).status == 200
    pinged = daemon.clock.now()
    caplog.set_level(logging.INFO, "heartbeatd.reload")
    assert await reload_with(daemon, config_file, reread, check("job", "1m"))
    assert "changed check job: period" in [r.getMessage() for r in caplog.records]

    await daemon.advance(69.9)
    assert await daemon.query("SELECT new_status FROM flips") == [("up",)]
    await daemon.advance(0.2)  # 1m + 10s after the ping, not 5m + 10s
    assert await daemon.query("SELECT new_status, at FROM flips") == [
        ("up", pinged),
        ("down", pinged + 70),
    ]


async def test_a_broken_file_keeps_the_running_config_and_says_where(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = await start_daemon(check("job", "1m"))
    before = await uuids(daemon)
    broken = check("job", "1m") + check("other", "soon")
    assert not await reload_with(daemon, config_file, reread, broken)
    assert await uuids(daemon) == before
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"{config_file}:11: period: expected a duration like '45s', '5m', '2h', '1d' "
        "or '1w', got 'soon'; still running on the previous config"
    ]


async def test_a_reload_that_reads_an_empty_file_keeps_every_check(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = await start_daemon(check("job", "1m"))
    before = await uuids(daemon)
    assert not await reload_with(daemon, config_file, reread, "")  # caught mid-rewrite
    assert await uuids(daemon) == before
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"{config_file}: file: is empty (a comment in it is enough to run on the defaults); "
        "still running on the previous config"
    ]


async def test_a_notifier_with_bad_options_is_a_broken_file_too(
    start_daemon: Callable[..., Any], config_file: Path, reread: Callable[[], Config]
) -> None:
    daemon = await start_daemon(check("job", "1m"))
    bad = check("job", "1m") + webhook("ftp://nowhere")
    assert not await reload_with(daemon, config_file, reread, bad)
    assert await daemon.query("SELECT slug FROM checks") == [("job",)]


async def test_alerts_go_to_the_reloaded_notifiers(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: dict[str, list[str]] = {"old": [], "new": []}

    def sink(name: str) -> Callable[[web.Request], Any]:
        async def hook(request: web.Request) -> web.Response:
            received[name].append((await request.json())["event"])
            return web.Response()

        return hook

    app = web.Application()
    app.router.add_post("/old", sink("old"))
    app.router.add_post("/new", sink("new"))
    server = await aiohttp_server(app)
    daemon = await start_daemon(check("job", "1m") + webhook(str(server.make_url("/old"))))
    uuid = (await uuids(daemon))["job"]
    await daemon.client.get(f"/ping/{uuid}/fail")
    await eventually(lambda: received["old"] == ["down"])

    caplog.set_level(logging.INFO, "heartbeatd.reload")
    new = check("job", "1m") + webhook(str(server.make_url("/new")))
    assert await reload_with(daemon, config_file, reread, new)
    assert "changed notifier hook" in [r.getMessage() for r in caplog.records]
    await daemon.client.get(f"/ping/{uuid}")
    await eventually(lambda: received["new"] == ["up"])
    assert received["old"] == ["down"]


async def test_a_send_under_way_during_reload_finishes_before_its_notifier_closes(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    aiohttp_server: Any,
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/slow", slow)
    server = await aiohttp_server(app)
    toml = check("job", "1m") + webhook(str(server.make_url("/slow")))
    daemon = await start_daemon(toml)
    uuid = (await uuids(daemon))["job"]
    await daemon.client.get(f"/ping/{uuid}/fail")
    await arrived.wait()

    assert await reload_with(daemon, config_file, reread, toml)
    release.set()
    await eventually(lambda: _outbox_states(daemon, ["sent"]))


async def _outbox_states(daemon: Daemon, expected: list[str]) -> bool:
    return [row[0] for row in await daemon.query("SELECT state FROM outbox")] == expected


async def test_settings_wired_at_start_up_wait_for_a_restart(
    start_daemon: Callable[..., Any],
    config_file: Path,
    reread: Callable[[], Config],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = await start_daemon(check("job", "1m"))
    assert await reload_with(daemon, config_file, reread, "ping_body_limit = 10\n")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["ping_body_limit changed; it takes effect at the next restart"]
    assert await daemon.query("SELECT slug FROM checks") == []


async def test_pings_are_answered_all_through_reloads(tmp_path: Path) -> None:
    """The real daemon, pinged without pause by four clients while it reloads 20 times."""
    port = free_port()
    config = tmp_path / "heartbeatd.toml"
    head = f'listen = "127.0.0.1:{port}"\n'
    config.write_text(head + check("steady", "1m"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "heartbeatd", "serve", "--config", str(config)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    answers: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: _up(session, base), timeout=20)
            listed = subprocess.run(
                [sys.executable, "-m", "heartbeatd", "check", "list", "--json", "--config",
                 str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            url = f"{base}/ping/{json.loads(listed.stdout)[0]['uuid']}"
            done = asyncio.Event()

            async def pinger() -> None:
                while not done.is_set():
                    async with session.get(url) as response:
                        answers.append(response.status)

            pingers = [asyncio.create_task(pinger()) for _ in range(4)]
            for n in range(20):
                extra = check(f"extra-{n}", "1h") if n % 2 == 0 else ""
                replace_file(config, head + check("steady", "1m") + extra)
                daemon.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.05)
            done.set()
            await asyncio.gather(*pingers)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, errors
    assert "Traceback" not in errors
    assert errors.count("config reloaded") >= 10, errors  # signals may merge, not get lost
    assert len(answers) > 100
    assert set(answers) == {200}


def replace_file(path: Path, text: str) -> None:
    """Write as editors' safe save and config tools do: a reload queued behind another may read
    the file at any moment, and an in-place write has a moment when it is empty."""
    new = path.with_suffix(".new")
    new.write_text(text)
    os.replace(new, path)


async def _up(session: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with session.get(f"{base}/ping/not-a-check"):
            return True
    except aiohttp.ClientError:
        return False
