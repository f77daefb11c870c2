"""The contrib examples hold up: systemd accepts the timer units, their commands ping the real
daemon the way systemd would run them, and every crontab example is a valid cron line."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.importers.crontab import parse_crontab
from tests.conftest import Daemon

CONTRIB = Path(__file__).parent.parent / "contrib"
UNITS = CONTRIB / "systemd-timer"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def directive(unit: Path, key: str) -> str:
    (line,) = [line for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]
    return line.split("=", 1)[1]


def as_systemd_runs(command: str, instance: str, env: dict[str, str]) -> list[str]:
    """An Exec line as systemd turns it into argv: `-` prefix, specifiers, ${VAR}, `$$`."""
    command = command.removeprefix("-").replace("%i", instance).replace("%%", "%")
    command = re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], command)
    return shlex.split(command.replace("$$", "$"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_timer_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    env_file = tmp_path / "ping.env"
    env_file.write_text("HEARTBEATD_SITE_URL=http://127.0.0.1:8000\n")
    for unit in UNITS.iterdir():  # the job itself must exist for verify: /bin/true stands in
        text = unit.read_text().replace("/usr/local/bin/backup.sh", "/bin/true")
        (tmp_path / unit.name).write_text(text.replace("/etc/heartbeatd/ping.env", str(env_file)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "backup.service", "backup.timer",
         "heartbeatd-ping@backup.service"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "backup" in line or "ping" in line]
    assert result.returncode == 0 and ours == [], result.stderr


async def run_argv(argv: list[str], env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **env})
    return await asyncio.wait_for(process.wait(), 30)


async def instance_env(daemon: Daemon) -> dict[str, str]:
    return {
        "HEARTBEATD_SITE_URL": str(daemon.client.make_url("/")).rstrip("/"),
        "HEARTBEATD_PING_KEY": await daemon.store.ping_key(),
    }


@needs_curl
async def test_the_start_ping_of_backup_service_reaches_the_check(daemon: Daemon) -> None:
    await daemon.add("backup")
    env = await instance_env(daemon)
    argv = as_systemd_runs(directive(UNITS / "backup.service", "ExecStartPre"), "", env)
    assert await run_argv(argv, env) == 0
    assert await daemon.query("SELECT kind FROM pings") == [("start",)]


@needs_curl
@pytest.mark.parametrize(
    ("exit_code", "exit_status", "kind", "reported"),
    [("exited", "0", "success", 0), ("exited", "3", "fail", 3), ("killed", "TERM", "fail", None)],
)
async def test_the_ping_unit_reports_how_the_job_ended(
    daemon: Daemon, exit_code: str, exit_status: str, kind: str, reported: Any
) -> None:
    await daemon.add("backup")
    env = await instance_env(daemon)
    env |= {"MONITOR_EXIT_CODE": exit_code, "MONITOR_EXIT_STATUS": exit_status,
            "MONITOR_INVOCATION_ID": uuid.uuid4().hex}  # fmt: skip
    argv = as_systemd_runs(
        directive(UNITS / "heartbeatd-ping@.service", "ExecStart"), "backup", env
    )
    assert await run_argv(argv, env) == 0
    assert await daemon.query("SELECT kind, exit_status FROM pings") == [(kind, reported)]


def test_every_crontab_example_is_a_cron_line_that_reports() -> None:
    crontab = parse_crontab((CONTRIB / "crontab.example").read_text(), "UTC")
    assert crontab.jobs == []  # each line already reports to heartbeatd, so none is proposed
    assert len(crontab.skipped) == 6
    assert {s.why for s in crontab.skipped} == {"already reports to a monitor"}
