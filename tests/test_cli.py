"""The heartbeatd command, run as a user would (click's runner, a real database file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from heartbeatd.cli import cli


@pytest.fixture
def hb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for name in ("HEARTBEATD_DB", "HEARTBEATD_CONFIG", "HEARTBEATD_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


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
