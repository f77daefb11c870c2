"""The heartbeatd command, run as a user would (click's runner, a real database file)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.store import ByUuid, PingIn, Store


def test_check_add_prints_the_ping_url_and_a_crontab_line(hb) -> None:
    result = hb("check", "add", "Nightly Backup", "--period", "5m", "--grace", "1m")
    assert result.exit_code == 0, result.output
    assert "Added check 'Nightly Backup' (every 5m, grace 1m)" in result.output
    assert "Ping URL: http://127.0.0.1:8000/ping/" in result.output
    assert (
        "*/5 * * * * /path/to/job && curl -fsS -m 10 --retry 5 -o /dev/null http" in result.output
    )
    assert Path("heartbeatd.db").exists()  # the embedded default: a file in the current directory


def test_check_add_with_cron_and_json(hb) -> None:
    result = hb("check", "add", "report", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--json")
    added = json.loads(result.output)
    assert added["slug"] == "report" and added["cron"] == "0 3 * * *"
    assert added["schedule"] == "At 03:00 every day (Europe/Berlin)"
    assert added["status"] == "new"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "soon"], "expected a duration like"),
        (["--period", "0s"], "must be between 1s and 365d"),
        (["--cron", "61 * * * *"], "bad cron expression"),
        (["--cron", "0 3 * * *", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["--notifier", "pager"], "no notifier 'pager' in the config"),
    ],
)
def test_check_add_refuses_bad_input_with_a_sentence(hb, args: list[str], message: str) -> None:
    result = hb("check", "add", "job", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_list_show_pause_resume_remove(hb) -> None:
    hb("check", "add", "backup", "--period", "1h")
    listed = hb("check", "list")
    assert "new" in listed.output and "backup" in listed.output and "every 1h" in listed.output
    assert hb("check", "pause", "backup").output == "Paused 'backup'.\n"
    assert json.loads(hb("check", "show", "backup", "--json").output)["status"] == "paused"
    assert hb("check", "resume", "backup").exit_code == 0
    refused = hb("check", "resume", "backup")
    assert refused.exit_code == 1 and "check is not paused" in refused.output
    shown = hb("check", "show", "backup")
    assert "paused -> new: resume" in shown.output
    assert hb("check", "remove", "backup").exit_code == 0
    assert json.loads(hb("check", "list", "--json").output) == []


def test_an_unknown_check_is_one_sentence(hb) -> None:
    result = hb("check", "pause", "nope")
    assert result.exit_code == 1
    assert result.output == "Error: no check 'nope'\n"


def test_rotate_gives_a_new_uuid(hb) -> None:
    before = json.loads(hb("check", "add", "job", "--json").output)["uuid"]
    result = hb("check", "rotate", "job")
    after = json.loads(hb("check", "show", "job", "--json").output)["uuid"]
    assert before != after and after in result.output


def test_ping_key_is_stable_until_rotated(hb) -> None:
    first = hb("ping-key").stdout.strip()
    assert len(first) >= 22  # 128 random bits, URL-safe
    assert hb("ping-key").stdout.strip() == first
    rotated = hb("ping-key", "--rotate").stdout.strip()
    assert rotated != first and hb("ping-key").stdout.strip() == rotated


def test_a_config_error_names_file_line_and_key(hb, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('listen = "127.0.0.1:8000"\nping_retention = "lots"\n')
    result = hb("check", "list", "--config", str(config))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {config}:2: ping_retention: ")
    assert "Traceback" not in result.output


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_sink():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.received.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Recorder.received
    server.shutdown()
    server.server_close()


def notifier_config(tmp_path: Path, url: str) -> str:
    config = tmp_path / "hb.toml"
    config.write_text(f'[[notifier]]\nname = "ops"\ntype = "webhook"\nurl = "{url}"\n')
    return str(config)


def test_notify_test_sends_a_test_message_and_says_so(hb, tmp_path: Path, webhook_sink) -> None:
    url, received = webhook_sink
    result = hb("notify", "test", "ops", "--config", notifier_config(tmp_path, url))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ops: test message delivered in ")
    assert received[0]["event"] == "test"
    assert received[0]["summary"] == "Test notification from heartbeatd for heartbeatd test"


def test_notify_test_reports_the_exact_error(hb, tmp_path: Path, unused_tcp_port: int) -> None:
    config = notifier_config(tmp_path, f"http://127.0.0.1:{unused_tcp_port}/hook")
    result = hb("notify", "test", "ops", "--config", config)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: ops: cannot connect to 127.0.0.1:{unused_tcp_port}")
    assert hb("notify", "test", "pager", "--config", config).output.startswith(
        "Error: no notifier named 'pager'; the config has: ops"
    )


def test_notify_log_lists_each_notification_and_its_outcome(hb) -> None:
    hb("check", "add", "backup", "--period", "1m")
    assert hb("notify", "log").output == "no notifications yet\n"

    async def fail_the_check() -> None:  # as the daemon does when /fail arrives
        async with Store(Path("heartbeatd.db")) as store:
            store.router = lambda check, event: ["ops"]
            check = await store.get_check("backup")
            ping = PingIn("fail", None, None, "GET", "http", "127.0.0.1", "curl", b"", 0)
            await store.record_ping(ByUuid(check.uuid), ping, time.time())

    asyncio.run(fail_the_check())
    line = hb("notify", "log", "--check", "backup").output
    assert " backup down -> ops: pending next " in line and "after 0 attempt(s)" in line
    (row,) = json.loads(hb("notify", "log", "--json").output)
    assert (row["slug"], row["event"], row["notifier"], row["state"]) == (
        "backup",
        "down",
        "ops",
        "pending",
    )


async def test_ping_reaches_a_check_by_its_slug(
    start_daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await start_daemon()
    check = await daemon.add("nightly")
    monkeypatch.setenv("HEARTBEATD_SITE_URL", str(daemon.client.make_url("")).rstrip("/"))
    monkeypatch.delenv("HEARTBEATD_PING_KEY", raising=False)
    argv = ["ping", "nightly", "--fail", "--db", str(tmp_path / "heartbeatd.db")]
    # A worker thread: the daemon answers from this test's event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pinged = await daemon.store.get_check(check.uuid)
    assert pinged.n_pings == 1 and pinged.status == "down"


def test_ping_by_slug_without_a_ping_key_says_how_to_get_one(hb) -> None:
    result = hb("ping", "nightly")
    assert result.exit_code == 1
    assert "'nightly' is a slug, and slug URLs need the ping key" in result.output
