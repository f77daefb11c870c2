"""contrib/hb, the POSIX sh wrapper, run by dash with real curl against the real daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon
from tests.test_end_to_end import free_port

HB = Path(__file__).parent.parent / "contrib" / "hb"
SHELL = shutil.which("dash") or "sh"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="needs curl (.ci/run installs it)"
)


async def hb(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        SHELL, str(HB), *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out, err


async def pings(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query(
        "SELECT kind, exit_status, rid, body, body_size FROM pings ORDER BY id"
    )


def url_of(daemon: Daemon, check: Any) -> str:
    return str(daemon.client.make_url(f"/ping/{check.uuid}"))


async def test_a_successful_job_pings_start_then_success_with_its_output(daemon: Daemon) -> None:
    check = await daemon.add()
    code, out, err = await hb(url_of(daemon, check), "--", "sh", "-c", "echo hi; echo warn >&2")
    assert (code, out, err) == (0, b"hi\n", b"warn\n")
    (start, finish) = await pings(daemon)
    assert start[0] == "start" and finish[:2] == ("success", 0)
    assert sorted(finish[3].splitlines()) == [b"hi", b"warn"]
    assert start[2] == finish[2] and uuid.UUID(start[2])  # one run id pairs them


async def test_a_failing_job_reports_its_status_and_hb_exits_with_it(daemon: Daemon) -> None:
    check = await daemon.add()
    code, _, _ = await hb(url_of(daemon, check), "--", "sh", "-c", "echo broke >&2; exit 3")
    assert code == 3
    assert (await pings(daemon))[-1][:2] == ("fail", 3)
    assert (await pings(daemon))[-1][3] == b"broke\n"
    assert (await daemon.query("SELECT status FROM checks")) == [("down",)]


async def test_hb_url_from_the_environment(daemon: Daemon) -> None:
    check = await daemon.add()
    code, out, _ = await hb("echo", "from env", env={"HB_URL": url_of(daemon, check)})
    assert (code, out) == (0, b"from env\n")
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("success", 0)]


async def test_only_the_last_100_kb_of_output_is_sent(daemon: Daemon) -> None:
    check = await daemon.add()
    code, out, _ = await hb(url_of(daemon, check), "--", "sh", "-c", "seq 1 40000")
    assert code == 0 and len(out) > 150_000
    body, size = (await pings(daemon))[-1][3:]
    assert size == 100_000 and body == out[-100_000:]


async def test_a_missing_command_reports_127(daemon: Daemon) -> None:
    check = await daemon.add()
    code, _, err = await hb(url_of(daemon, check), "--", "no-such-command-here")
    assert code == 127 and b"no-such-command-here" in err
    assert (await pings(daemon))[-1][:2] == ("fail", 127)


async def test_an_unreachable_monitor_does_not_fail_the_job() -> None:
    url = f"http://127.0.0.1:{free_port()}/ping/{uuid.uuid4()}"
    code, out, err = await hb(url, "--", "sh", "-c", "echo ran; exit 4")
    assert (code, out) == (4, b"ran\n")
    assert [line.split(":")[0:2] for line in err.decode().splitlines()] == [
        ["hb", " warning"], ["hb", " warning"]
    ]  # fmt: skip


async def test_without_a_url_it_prints_usage() -> None:
    code, _, err = await hb("echo", "hi", env={"HB_URL": ""})
    assert code == 2 and err.startswith(b"usage: hb URL -- command")


@pytest.mark.parametrize("linter", [["shellcheck", "-s", "sh"], ["checkbashisms"]])
def test_hb_is_portable_sh(linter: list[str]) -> None:
    if shutil.which(linter[0]) is None:
        pytest.skip(f"{linter[0]} is not installed")
    result = subprocess.run([*linter, str(HB)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
