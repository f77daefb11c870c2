"""contrib/Caddyfile holds up: Debian's caddy runs the very file in front of the real app, with a
forward-auth service standing in for Authelia, and a visitor gets exactly what the README's
Security section says: signed in by the header only through the auth service, never by sending
it, while cron jobs' pings and API calls pass without a sign-in."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from heartbeatd.core.model import unique_key
from tests.conftest import Daemon, eventually
from tests.test_crash import free_port

CADDYFILE = Path(__file__).parent.parent / "contrib" / "Caddyfile"
CONFIG = '[ui]\ntrusted_header = "Remote-User"\n'
PROXIED = {"trusted_proxies": "127.0.0.1", "site_url": "https://hb.example.net"}
SIGNED_IN = {"alice-cookie": "alice", "bob-cookie": "bob"}  # the auth service's sessions

pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="needs caddy")


async def forward_auth(request: web.Request) -> web.Response:
    """Authelia's forward-auth answer: 200 naming the user of a session, 401 for anyone else."""
    user = SIGNED_IN.get(request.cookies.get("auth", ""))
    if user is None:
        return web.Response(status=401, text="sign in at the auth portal")
    return web.Response(headers={"Remote-User": user})


@pytest.fixture
async def auth_port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward_auth)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


@pytest.fixture
async def caddy(tmp_path: Path, auth_port: int, start_daemon: Any) -> AsyncIterator[Any]:
    """(daemon, base URL through caddy) with contrib/Caddyfile imported as it is."""
    daemon: Daemon = await start_daemon(CONFIG, **PROXIED)
    port = free_port()
    wrapper = tmp_path / "Caddyfile"
    wrapper.write_text(f"{{\n\tadmin off\n\tauto_https off\n}}\nimport {CADDYFILE}\n")
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "HEARTBEATD_SITE": f"http://127.0.0.1:{port}",
        "HEARTBEATD_UPSTREAM": f"127.0.0.1:{daemon.client.port}",
        "AUTH_UPSTREAM": f"127.0.0.1:{auth_port}",
    }
    log = (tmp_path / "caddy.log").open("wb")
    process = subprocess.Popen(
        ["caddy", "run", "--config", str(wrapper), "--adapter", "caddyfile"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    async def answers() -> bool:
        assert process.poll() is None, (tmp_path / "caddy.log").read_text()
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/ping/x") as r:
                return r.status == 404
        except aiohttp.ClientError:
            return False

    try:
        await eventually(answers, timeout=20)
        yield daemon, base
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)
        log.close()


async def fetch(base: str, path: str, method: str = "GET", **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.text()


async def test_the_status_page_needs_the_auth_services_sign_in(caddy: Any) -> None:
    daemon, base = caddy
    check = await daemon.add("backup")
    status, text = await fetch(base, "/")
    assert status == 401 and "backup" not in text
    forged = await fetch(base, f"/checks/{check.uuid}", **{"Remote-User": "alice"})
    assert forged[0] == 401 and check.uuid not in forged[1]


async def test_a_signed_in_admin_sees_ping_urls_and_a_viewer_does_not(caddy: Any) -> None:
    daemon, base = caddy
    check = await daemon.add("backup")
    await daemon.store.set_password("alice", "!", daemon.clock.now(), "admin")
    page = f"/checks/{unique_key(check.uuid)}"
    status, html = await fetch(base, page, Cookie="auth=alice-cookie")
    assert status == 200 and f"https://hb.example.net/ping/{check.uuid}" in html
    assert "Log out alice" in html
    # bob is no user here: the default trusted_header_role makes him a viewer; claiming to be
    # alice in his own request changes nothing, the auth service's answer wins
    status, html = await fetch(base, page, Cookie="auth=bob-cookie", **{"Remote-User": "alice"})
    assert status == 200 and "Log out bob" in html and check.uuid not in html


async def test_pings_and_the_api_pass_without_a_sign_in(caddy: Any) -> None:
    daemon, base = caddy
    check = await daemon.add("backup")
    assert await fetch(base, f"/ping/{check.uuid}", "POST") == (200, "OK")
    assert (await daemon.store.get_check(check.uuid)).last_ping is not None
    assert (await fetch(base, "/api/v3/checks/"))[0] == 401  # the API's own key, not a portal
