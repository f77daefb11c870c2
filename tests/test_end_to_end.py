"""The real `heartbeatd serve` process, pinged with curl, alerting a real webhook sink."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import eventually

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="needs curl (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def curl(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def test_serve_pings_alerts_recovers_and_stops_cleanly(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    sink_app = web.Application()
    sink_app.router.add_post("/hook", hook)
    sink = await aiohttp_server(sink_app)

    port = free_port()
    config = tmp_path / "heartbeatd.toml"
    config.write_text(
        f"""
listen = "127.0.0.1:{port}"

[[check]]
name = "Every second"
slug = "every-second"
period = "1s"
grace = "1s"

[[notifier]]
name = "sink"
type = "webhook"
url = "{sink.make_url("/hook")}"
default = true
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "heartbeatd", "serve", "--config", str(config)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        await eventually(lambda: _answers(base), timeout=20)
        command = [sys.executable, "-m", "heartbeatd", "check", "list", "--json"]
        listed = subprocess.run(
            [*command, "--config", str(config)],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        uuid = json.loads(listed.stdout)[0]["uuid"]

        assert await curl(f"{base}/ping/{uuid}") == (200, "OK")
        assert await curl("--data-raw", "42 rows", f"{base}/ping/{uuid}/0") == (200, "OK")
        assert await curl(f"{base}/ping/{uuid}/256") == (400, "invalid url format")
        assert await curl(f"{base}/ping/00000000-0000-4000-8000-000000000000") == (404, "not found")

        await eventually(lambda: received, timeout=10)  # silent for 1 s + 1 s grace
        assert received[0]["event"] == "down"
        assert received[0]["check"]["slug"] == "every-second"
        assert received[0]["last_body_tail"] == "42 rows"

        assert await curl(f"{base}/ping/{uuid}") == (200, "OK")
        await eventually(lambda: len(received) >= 2, timeout=10)
        assert received[1]["event"] == "up"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, errors
    assert "Traceback" not in errors
    assert "every-second is DOWN" not in errors  # the webhook got it, not the log notifier
    assert "database closed" in errors


async def _answers(base: str) -> bool:
    try:
        code, _ = await curl(f"{base}/")
    except OSError:
        return False
    return code == 200


def test_serve_with_a_bad_config_says_where_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[check]]\nname = "x"\nslug = "x"\nperiod = "soon"\n')
    result = subprocess.run(
        [sys.executable, "-m", "heartbeatd", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{config}:4: period: " in result.stderr
    assert "Traceback" not in result.stderr
