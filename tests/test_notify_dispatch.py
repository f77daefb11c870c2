"""Every notifier kind configured in the daemon's config file, reached through the dispatcher
(heartbeatd/notify/dispatch.py): a check going down alerts each default notifier, with secrets
read from files, and each outbox row ends up sent.

The services are the loopback stand-ins of each kind's own test module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heartbeatd.core.model import unique_key
from tests.conftest import Daemon, eventually
from tests.notify_helpers import OUTPUT
from tests.test_notify_apprise import serve_apprise
from tests.test_notify_discord import discord_options, serve_discord
from tests.test_notify_gotify import GOTIFY_TOKEN, serve_gotify
from tests.test_notify_matrix import MATRIX_TOKEN, ROOM, serve_matrix
from tests.test_notify_ntfy import NTFY_TOKEN, NTFY_TOPIC, serve_ntfy
from tests.test_notify_pushover import PUSHOVER_TOKEN, PUSHOVER_USER, serve_pushover
from tests.test_notify_slack import SLACK_PATH, serve_slack
from tests.test_notify_telegram import BOT_TOKEN, serve_telegram


async def test_a_check_going_down_reaches_telegram_pushover_matrix_and_apprise(
    start_daemon: Any, tmp_path: Path, aiohttp_server: Any
) -> None:
    telegram = await serve_telegram(aiohttp_server)
    pushover = await serve_pushover(aiohttp_server)
    homeserver = await serve_matrix(aiohttp_server)
    sink = await serve_apprise(aiohttp_server)
    (tmp_path / "telegram.token").write_text(BOT_TOKEN + "\n")
    daemon: Daemon = await start_daemon(
        f"""
[[notifier]]
name = "telegram"
type = "telegram"
api_url = "{telegram.url}"
bot_token_file = "telegram.token"
chat_id = "-1001234567890"
default = true

[[notifier]]
name = "pushover"
type = "pushover"
api_url = "{pushover.url}"
token = "{PUSHOVER_TOKEN}"
user = "{PUSHOVER_USER}"
default = true

[[notifier]]
name = "matrix"
type = "matrix"
homeserver = "{homeserver.url}"
access_token = "{MATRIX_TOKEN}"
room_id = "{ROOM}"
default = true

[[notifier]]
name = "apprise"
type = "apprise"
urls = ["{sink.apprise_url()}"]
timeout = "20s"
default = true
"""
    )
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=OUTPUT)
    await daemon.advance(7)
    services = (telegram, pushover, homeserver, sink)
    await eventually(lambda: all(service.accepted for service in services))
    assert telegram.accepted[0]["bold"][0] == "backup is DOWN (missed ping)"
    assert pushover.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error: connection refused" in homeserver.accepted[0]["body"]
    assert sink.accepted[0]["type"] == "failure"
    await eventually(lambda: _all_chat_sent(daemon))


async def _all_chat_sent(daemon: Daemon) -> bool:
    rows = await daemon.query("SELECT notifier, state FROM outbox ORDER BY notifier")
    return rows == [(n, "sent") for n in ("apprise", "matrix", "pushover", "telegram")]


async def test_a_check_going_down_reaches_ntfy_gotify_discord_and_slack(
    start_daemon: Any, tmp_path: Path, aiohttp_server: Any
) -> None:
    ntfy = await serve_ntfy(aiohttp_server)
    gotify = await serve_gotify(aiohttp_server)
    discord = await serve_discord(aiohttp_server)
    slack = await serve_slack(aiohttp_server)
    (tmp_path / "ntfy.token").write_text(NTFY_TOKEN + "\n")
    (tmp_path / "discord.url").write_text(f"{discord_options(discord)['url']}\n")
    daemon: Daemon = await start_daemon(
        f"""
[[notifier]]
name = "phone"
type = "ntfy"
server = "{ntfy.url}"
topic = "{NTFY_TOPIC}"
token_file = "ntfy.token"
default = true

[[notifier]]
name = "gotify"
type = "gotify"
server = "{gotify.url}"
token = "{GOTIFY_TOKEN}"
default = true

[[notifier]]
name = "discord"
type = "discord"
url_file = "discord.url"
default = true

[[notifier]]
name = "slack"
type = "slack"
url = "{slack.url}{SLACK_PATH}"
default = true
"""
    )
    check = await daemon.add(period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=OUTPUT)
    await daemon.advance(7)
    services = (ntfy, gotify, discord, slack)
    await eventually(lambda: all(service.accepted for service in services))
    assert ntfy.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert ntfy.accepted[0]["click"].endswith(f"/checks/{unique_key(check.uuid)}")
    assert gotify.accepted[0]["title"] == "backup is DOWN (missed ping)"
    assert "pg_dump: error" in discord.accepted[0]["embeds"][0]["description"]
    assert slack.accepted[0]["text"] == ":red_circle: backup is DOWN (missed ping)"
    await eventually(lambda: _all_push_sent(daemon))


async def _all_push_sent(daemon: Daemon) -> bool:
    rows = await daemon.query("SELECT notifier, state FROM outbox ORDER BY notifier")
    return rows == [(n, "sent") for n in ("discord", "gotify", "phone", "slack")]
