"""Leaks and injections through what heartbeatd writes for others: webhooks, badges, errors.

Holes proved closed here:
- a check's name filled raw into a form-encoded webhook body added fields of its own choosing
  (a check named `a&status=up` turned a down alert into an up one for the receiver);
- the instance's badge secret sat in every group badge URL, and each check's badge key was an
  HMAC of it over the check's sequential id: one badge URL from a README gave every check's
  badge (its name and status), and every tag's;
- badge URLs published before the fix kept working, though anyone could have worked out every
  other one from them;
- a config error quoted the value it refused: a Slack or webhook URL, a header's token, an
  Apprise URL, a password, a shell command with a token in it, the self-ping URL;
- a failed delivery stored (and showed on the check's page) and logged what the service said,
  and services echo what they were sent: a webhook's secret path, its Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web

from heartbeatd.core.config import ConfigError
from tests.conftest import Daemon, eventually

# -- webhook templates ------------------------------------------------------------------------

INJECTING_NAME = "a&status=up +%41é"


async def test_a_check_name_cannot_add_fields_to_a_form_webhook(
    start_daemon: Any, aiohttp_server: Any
) -> None:
    forms: list[list[tuple[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        forms.append(parse_qsl(await request.text(), keep_blank_values=True, strict_parsing=True))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await aiohttp_server(app)
    daemon = await start_daemon(f"""
[[notifier]]
name = "hook"
type = "webhook"
url = "{server.make_url("/hook")}"
default = true
headers = {{ "Content-Type" = "application/x-www-form-urlencoded; charset=utf-8" }}
body_down = "name=$name&status=$status"
""")
    check = await daemon.add(INJECTING_NAME, slug="a", period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: forms)
    assert forms[0] == [("name", INJECTING_NAME), ("status", "down")]


# -- badges -----------------------------------------------------------------------------------


def old_mac(secret: str, message: str, length: int) -> str:
    """How badge keys were made before: what an attacker holding that secret computes."""
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


async def api_get(daemon: Daemon, path: str) -> Any:
    """What a read-only API key reads, a key made for the call."""
    name = f"reader-{len(await daemon.store.api_keys())}"
    key, _ = await daemon.store.create_api_key(name, True, daemon.clock.now(), "cli")
    response = await daemon.client.get(f"/api/v3/{path}", headers={"X-Api-Key": key})
    assert response.status == 200
    return await response.json()


async def status(daemon: Daemon, url: str) -> int:
    response = await daemon.client.get(urlsplit(url).path)
    await response.read()
    return response.status


async def test_a_group_badge_url_opens_no_check_badge_and_no_other_tag(daemon: Daemon) -> None:
    for name, tags in (("web", ("prod",)), ("db", ("prod", "db")), ("payroll", ("hr",))):
        check = await daemon.add(name, tags=tags)
        await daemon.client.get(f"/ping/{check.uuid}")
    listed = (await api_get(daemon, "badges/"))["badges"]
    published = urlsplit(listed["prod"]["svg"]).path  # /badge/<key>/<sig>-2/prod.svg
    assert await status(daemon, published) == 200
    key = published.split("/")[2]
    guesses = [f"/b/{n}/{old_mac(key, f'check:{i}', 22)}.svg" for i in range(1, 9) for n in "23"]
    guesses += [
        published.replace("/prod.svg", "/hr.svg"),  # another tag, same signature
        published.replace("/prod.svg", ".svg"),  # every check
        f"/badge/{key}/{old_mac(key, 'badge', 8)}-2/hr.svg",
    ]
    assert [await status(daemon, guess) for guess in guesses] == [404] * len(guesses)
    secret = await daemon.store.badge_secret()
    checks = (await api_get(daemon, "checks/"))["checks"]
    assert secret not in json.dumps(listed) + json.dumps(checks)
    for check in checks:  # each check's own badge URL works; one character off does not
        assert await status(daemon, check["badge_url"]) == 200
        near = check["badge_url"].replace("/b/2/", "/b/2/x")[:-5] + ".svg"
        assert await status(daemon, near) == 404
    assert await status(daemon, listed["hr"]["json3"]) == 200


async def test_badge_urls_published_before_the_upgrade_stop_working(daemon: Daemon) -> None:
    check = await daemon.add("payroll")
    await daemon.query("INSERT INTO meta (key, value) VALUES ('badge_key', 'leaked-long-ago')")
    old = "leaked-long-ago"
    group = f"/badge/{old}/{old_mac(old, 'badge', 8)}-2.svg"
    per_check = f"/b/2/{old_mac(old, f'check:{check.id}', 22)}.svg"
    assert [await status(daemon, group), await status(daemon, per_check)] == [404, 404]
    assert await daemon.query("SELECT value FROM meta WHERE key = 'badge_key'") == []


# -- config errors and delivery errors --------------------------------------------------------

SECRET = "Zq7SECRETxK2p"  # in every malformed value below; no error may show it

# kind, the malformed option's line, other lines: secret-bearing options given wrong
MALFORMED = {
    "slack url without https://": ("slack", f'url = "hooks.slack.com/T/B/{SECRET}"', ""),
    "webhook url on ftp": ("webhook", f'url = "ftp://ops:{SECRET}@example.org/h/{SECRET}"', ""),
    "webhook header not a string": (
        "webhook",
        f'headers = {{ Authorization = "Bearer {SECRET}", X-Retry = 3 }}',
        'url = "https://example.org/h"',
    ),
    "discord url without https://": ("discord", f'url = "discord.com/api/webhooks/1/{SECRET}"', ""),
    "ntfy server with a token in it": ("ntfy", f'server = "ntfy.sh/{SECRET}"', 'topic = "t"'),
    "apprise urls, one not a string": ("apprise", f'urls = ["tgram://{SECRET}/42", 5]', ""),
    "pushover token as a list": ("pushover", f'token = ["{SECRET}"]', 'user = "u"'),
    "email password as a table": (
        "email",
        f'password = {{ value = "{SECRET}" }}',
        'host = "h"\nusername = "u"\nfrom = "a@example.org"\nto = "b@example.org"',
    ),
    "shell command with an open quote": (
        "shell",
        f"command = 'curl -H \"Authorization: {SECRET}'",
        "",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_config_error_names_the_key_but_not_the_secret(
    start_daemon: Any, tmp_path: Path, case: str
) -> None:
    kind, malformed, others = MALFORMED[case]
    key = malformed.partition(" =")[0]
    with pytest.raises(ConfigError) as failure:
        await start_daemon(
            f'enable_shell = true\n[[notifier]]\nname = "n"\ntype = "{kind}"\n{malformed}\n'
            f"{others}\n"
        )
    assert str(failure.value).startswith(f"{tmp_path / 'heartbeatd.toml'}:5: {key}: ")
    assert SECRET not in str(failure.value)


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("self_ping_url", f'self_ping_url = "hc-ping.com/{SECRET}"'),
        ("metrics_key", f'metrics_key = ["{SECRET}{SECRET}"]'),
        ("site_url", f'site_url = "//hb:{SECRET}@example.org"'),
    ],
)
async def test_a_setting_error_names_the_key_but_not_the_secret(
    start_daemon: Any, tmp_path: Path, key: str, line: str
) -> None:
    with pytest.raises(ConfigError) as failure:
        await start_daemon(f"\n{line}\n")
    assert str(failure.value).startswith(f"{tmp_path / 'heartbeatd.toml'}:2: {key}: ")
    assert SECRET not in str(failure.value)


async def test_a_failed_delivery_keeps_the_webhooks_secrets_out_of_logs_and_pages(
    start_daemon: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.Response:  # as Express's 404 page, and worse
        said = f"Cannot POST {request.path_qs} with {request.headers['Authorization']}"
        return web.Response(status=404, text=said)

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/hooks/{SECRET}?key=k{SECRET}"
    daemon = await start_daemon(f"""
[[notifier]]
name = "hook"
type = "webhook"
url = "{url}"
default = true
headers = {{ Authorization = "Bearer b{SECRET}" }}
""")
    check = await daemon.add("payroll", period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    caplog.set_level(logging.DEBUG)
    await daemon.advance(7)
    await eventually(lambda: _failed(daemon))
    [(error,)] = await daemon.query("SELECT last_error FROM outbox")
    assert error.startswith(f"HTTP 404 from 127.0.0.1:{server.port}: Cannot POST <url")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("heartbeatd"))
    page = await (await daemon.client.get(f"/checks/{check.uuid}")).text()
    assert "HTTP 404 from" in logged and "HTTP 404 from" in page
    assert SECRET not in error + logged + page


async def _failed(daemon: Daemon) -> bool:
    return await daemon.query("SELECT state FROM outbox") == [("failed",)]
