"""The shell notifier running real commands: the event in HB_* variables, never in argv; exit
statuses, timeouts and missing programs; and a check going down in the running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from heartbeatd.core.config import ConfigError
from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.options import OptionError
from heartbeatd.notify.shell import ShellNotifier
from tests.conftest import Daemon, eventually
from tests.notify_helpers import OUTPUT, UUID, make_event

PYTHON = sys.executable
DUMP_ENV = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"


def dumped(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


async def test_the_command_gets_the_event_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    notifier = ShellNotifier("sh", {"command": [PYTHON, "-c", DUMP_ENV, str(out)]})
    event = make_event(name="nightly backup", slug="nightly-backup", tags="prod db")
    await notifier.send(event)
    env = dumped(out)
    assert {k: v for k, v in env.items() if k.startswith("HB_")} == {
        "HB_EVENT": "down",
        "HB_NAME": "nightly backup",
        "HB_SLUG": "nightly-backup",
        "HB_UUID": UUID,
        "HB_STATUS": "down",
        "HB_SUMMARY": "nightly backup is DOWN (missed ping)",
        "HB_TAGS": "prod db",
        "HB_REASON": "timeout",
        "HB_DETAIL": "missed ping",
        "HB_URL": f"http://hb.test/checks/{unique_key(UUID)}",
        "HB_PING_URL": f"http://hb.test/ping/{UUID}",
        "HB_BODY": OUTPUT.decode(),
        "HB_TIME": "2027-01-15T08:00:00+00:00",
    }
    assert env["PATH"] == os.environ["PATH"]  # heartbeatd's environment is kept


async def test_hb_body_is_the_end_of_the_output(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    notifier = ShellNotifier("sh", {"command": [PYTHON, "-c", DUMP_ENV, str(out)]})
    await notifier.send(make_event(body=b"a" * 20_000 + b"\0THE END"))
    body = dumped(out)["HB_BODY"]
    assert body.endswith("aaaTHE END")  # a NUL cannot be passed in the environment
    assert len(body) == 10_000 - 1


async def test_shell_syntax_in_check_data_is_only_text(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    # Were it ever given to a shell, this name would create the files.
    name = f"x; touch {tmp_path}/semicolon $(touch {tmp_path}/subst) `touch {tmp_path}/tick`"
    command = shlex.join([PYTHON, "-c", DUMP_ENV, str(out)])  # one string, split by shlex
    notifier = ShellNotifier("sh", {"command": command})
    await notifier.send(make_event(name=name, tags="$(id) ; |"))
    env = dumped(out)
    assert env["HB_NAME"] == name
    assert env["HB_TAGS"] == "$(id) ; |"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.json"]


async def test_a_non_zero_exit_fails_with_the_end_of_stderr() -> None:
    script = "import sys; sys.stderr.write('noise ' * 100 + 'relay refused\\n'); sys.exit(3)"
    notifier = ShellNotifier("sh", {"command": [PYTHON, "-c", script]})
    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_event())
    assert not caught.value.permanent
    tail = ("noise " * 100 + "relay refused")[-200:].strip()
    assert str(caught.value) == f"command exited with 3: {tail}"


async def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n"
    )
    notifier = ShellNotifier("sh", {"command": [PYTHON, "-c", script], "timeout": "2s"})
    assert notifier.timeout > 2  # the dispatcher leaves it time to kill and reap
    with pytest.raises(NotifyError, match="did not finish within 2s and was killed") as caught:
        await notifier.send(make_event())
    assert not caught.value.permanent
    command, child = (int(pid) for pid in pids.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.kill(command, 0)  # gone and reaped: no zombie left behind
    await eventually(lambda: _gone(child))  # the grandchild is reaped by init, not by us


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_a_missing_program_fails_for_good(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-notify-script")
    notifier = ShellNotifier("sh", {"command": [missing, "--now"]})
    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_event())
    assert caught.value.permanent
    assert str(caught.value) == f"command not found: {missing}"


async def test_a_program_that_cannot_be_run_fails_for_good(tmp_path: Path) -> None:
    script = tmp_path / "notify.sh"
    script.write_text("#!/bin/sh\necho hi\n")  # not executable
    with pytest.raises(NotifyError, match=r"cannot run .*notify\.sh: Permission denied") as caught:
        await ShellNotifier("sh", {"command": str(script)}).send(make_event())
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "expected the program to run"),
        ([], "expected the program to run"),
        ("notify 'unclosed", "cannot split"),
        (["notify", 3], "expected a list of strings"),
    ],
)
def test_bad_commands_are_refused(command: object, message: str) -> None:
    with pytest.raises(OptionError, match=message) as caught:
        ShellNotifier("sh", {"command": command})
    assert caught.value.key == "command"


def shell_config(command: list[str], extra: str = "") -> str:
    return f"""enable_shell = true

[[notifier]]
name = "script"
type = "shell"
default = true
command = [{", ".join(json.dumps(arg) for arg in command)}]
timeout = "10s"
{extra}
"""


async def go_down(daemon: Daemon, name: str = "backup") -> Any:
    check = await daemon.add(name, slug="backup", period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=b"dumped 0 tables")
    await daemon.advance(7)
    return check


async def outbox(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query("SELECT event, state, attempts, last_error FROM outbox")


async def test_a_check_going_down_runs_the_command(start_daemon, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    daemon = await start_daemon(shell_config([PYTHON, "-c", DUMP_ENV, str(out)]))
    name = f"x; rm -rf {tmp_path}/keep $(touch {tmp_path}/pwned)"
    (tmp_path / "keep").mkdir()
    check = await go_down(daemon, name)
    await eventually(lambda: out.exists())
    await eventually(lambda: _outbox_is(daemon, [("down", "sent", 1, "")]))
    env = dumped(out)
    assert env["HB_EVENT"] == "down" and env["HB_UUID"] == check.uuid
    assert env["HB_NAME"] == name
    assert env["HB_BODY"] == "dumped 0 tables"
    assert (tmp_path / "keep").is_dir() and not (tmp_path / "pwned").exists()


async def _outbox_is(daemon: Daemon, expected: list[tuple[Any, ...]]) -> bool:
    return await outbox(daemon) == expected


async def test_a_failing_command_is_recorded_and_retried(start_daemon) -> None:
    script = "import sys; sys.stderr.write('mail relay refused\\n'); sys.exit(2)"
    daemon = await start_daemon(shell_config([PYTHON, "-c", script]))
    await go_down(daemon)
    error = "command exited with 2: mail relay refused"
    await eventually(lambda: _outbox_is(daemon, [("down", "pending", 1, error)]))


async def test_shell_needs_enable_shell_and_a_valid_command(start_daemon) -> None:
    with pytest.raises(ConfigError, match=r"heartbeatd.toml:5: type: .*enable_shell = true"):
        await start_daemon(shell_config(["notify"]).replace("enable_shell = true", ""))
    with pytest.raises(ConfigError, match=r"heartbeatd.toml:7: command: cannot split"):
        await start_daemon(shell_config(["x"]).replace('["x"]', '"notify \'oops"'))
    with pytest.raises(ConfigError, match=r"heartbeatd.toml:9: events_on: unknown option"):
        await start_daemon(shell_config(["notify"], 'events_on = ["down"]'))


async def test_a_daemon_left_holding_the_output_does_not_hold_up_delivery(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )
    notifier = ShellNotifier("sh", {"command": [PYTHON, "-c", script], "timeout": "1s"})
    try:
        with pytest.raises(NotifyError, match="did not finish within 1s"):
            await asyncio.wait_for(notifier.send(make_event()), notifier.timeout)
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
