"""`heartbeatd run`: a real job in a real subprocess, reporting to the real daemon over HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from heartbeatd.cli.client import Pinger, run_job
from tests.conftest import Daemon, eventually
from tests.test_end_to_end import free_port


class Outcome:
    """What a wrapped run left behind: its exit code, what it printed, how often it slept."""

    def __init__(self, code: int, stdout: bytes, stderr: bytes, sleeps: list[float]) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.sleeps = sleeps


async def wrap(url: str, *argv: str, rid: str | None = None) -> Outcome:
    """run_job in a worker thread (the daemon shares this event loop), retries without waiting."""
    sleeps: list[float] = []
    pinger = Pinger(url, rid or str(uuid.uuid4()), sleep=sleeps.append)
    out, err = io.BytesIO(), io.BytesIO()
    code = await asyncio.to_thread(run_job, argv, pinger, out, err)
    return Outcome(code, out.getvalue(), err.getvalue(), sleeps)


def check_url(daemon: Daemon, check: Any) -> str:
    return str(daemon.client.make_url(f"/ping/{check.uuid}"))


async def pings(daemon: Daemon) -> list[tuple[Any, ...]]:
    return await daemon.query(
        "SELECT kind, exit_status, rid, duration, body, body_size FROM pings ORDER BY id"
    )


async def status(daemon: Daemon) -> str:
    return (await daemon.query("SELECT status FROM checks"))[0][0]


async def test_a_successful_job_reports_start_then_up_with_its_output(daemon: Daemon) -> None:
    check = await daemon.add()
    run = await wrap(check_url(daemon, check), "sh", "-c", "echo hello; echo oops >&2")
    assert run.code == 0
    assert run.stdout == b"hello\n" and run.stderr == b"oops\n"
    (start, finish) = await pings(daemon)
    assert start[:2] == ("start", None)
    assert finish[:2] == ("success", 0)
    assert sorted(finish[4].splitlines()) == [b"hello", b"oops"]
    assert await status(daemon) == "up"


async def test_a_failing_job_is_down_with_its_exit_code_and_output_tail(daemon: Daemon) -> None:
    check = await daemon.add()
    run = await wrap(check_url(daemon, check), "sh", "-c", "echo disk full >&2; exit 3")
    assert run.code == 3
    assert (await pings(daemon))[-1][:2] == ("fail", 3)
    assert (await pings(daemon))[-1][4] == b"disk full\n"
    assert await status(daemon) == "down"
    flips = await daemon.query("SELECT new_status, reason, detail FROM flips")
    assert flips == [("down", "fail", "exit status 3")]


async def test_output_passes_through_byte_for_byte(daemon: Daemon) -> None:
    check = await daemon.add()
    blob = bytes(range(256)) * 1000
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 1000)"
    run = await wrap(check_url(daemon, check), sys.executable, "-c", script)
    assert run.code == 0 and run.stdout == blob and run.stderr == b""


async def test_only_the_last_ping_body_limit_bytes_are_sent(start_daemon: Any) -> None:
    daemon = await start_daemon("ping_body_limit = 1000")
    check = await daemon.add()
    script = "import sys; sys.stdout.write(''.join(str(i % 10) for i in range(5000)))"
    run = await wrap(check_url(daemon, check), sys.executable, "-c", script)
    assert len(run.stdout) == 5000
    body, size = (await pings(daemon))[-1][4:]
    assert body == run.stdout[-1000:] and size == 1000


async def test_the_run_id_pairs_start_and_finish_so_the_duration_is_recorded(
    daemon: Daemon, tmp_path: Path
) -> None:
    check = await daemon.add()
    go = tmp_path / "go"
    rid = str(uuid.uuid4())
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.01; done"
    job = asyncio.ensure_future(wrap(check_url(daemon, check), "sh", "-c", wait_for_go, rid=rid))
    await eventually(lambda: pings(daemon))
    await daemon.advance(42)
    go.touch()
    assert (await job).code == 0
    (start, finish) = await pings(daemon)
    assert start[2] == finish[2] == rid
    assert finish[3] == 42.0


async def test_a_closed_stdout_does_not_stall_the_job(daemon: Daemon) -> None:
    """`heartbeatd run … | head -1`: the reader leaves, the job still runs to its end."""
    check = await daemon.add()
    read_end, write_end = os.pipe()
    os.close(read_end)
    script = "import sys; [print('line', i) for i in range(50000)]"
    pinger = Pinger(check_url(daemon, check), str(uuid.uuid4()), sleep=lambda _: None)
    with os.fdopen(write_end, "wb", buffering=0) as broken:
        code = await asyncio.to_thread(
            run_job, [sys.executable, "-c", script], pinger, broken, io.BytesIO()
        )
    assert code == 0
    assert (await pings(daemon))[-1][4].endswith(b"line 49999\n")


async def test_a_missing_command_exits_127_and_is_reported(daemon: Daemon) -> None:
    check = await daemon.add()
    run = await wrap(check_url(daemon, check), "no-such-command-here")
    assert run.code == 127
    assert b"no-such-command-here" in run.stderr
    assert (await pings(daemon))[-1][:2] == ("fail", 127)


async def test_a_job_killed_by_a_signal_reports_128_plus_its_number(daemon: Daemon) -> None:
    check = await daemon.add()
    run = await wrap(check_url(daemon, check), "sh", "-c", "kill -TERM $$")
    assert run.code == 128 + signal.SIGTERM
    assert (await pings(daemon))[-1][:2] == ("fail", 143)


async def test_a_background_process_holding_the_output_does_not_delay_the_report(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("heartbeatd.cli.client.DRAIN_AFTER_EXIT", 0.2)
    check = await daemon.add()
    run = await wrap(check_url(daemon, check), "sh", "-c", "echo started; sleep 3 &")
    assert run.code == 0 and run.stdout == b"started\n"
    assert (await pings(daemon))[-1][:2] == ("success", 0)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "monitor.invalid"])
async def test_a_refused_or_unresolvable_monitor_is_not_retried_and_warns_once(host: str) -> None:
    """No later try gets through a closed port or an unknown host: the job's exit is not
    held for retries (it was: 1+2+4+8 s of them for the final ping)."""
    url = f"http://{host.format(port=free_port())}/ping/{uuid.uuid4()}"
    run = await wrap(url, "sh", "-c", "echo still ran; exit 5")
    assert run.code == 5
    assert run.stdout == b"still ran\n"
    warnings = run.stderr.decode().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("heartbeatd run: warning: ping failed")
    assert run.sleeps == []


def wrapper_env(**variables: str) -> dict[str, str]:
    """Our environment without the variables `heartbeatd run` reads, plus `variables`."""
    ours = ("HEARTBEATD_", "HC_API_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)} | variables


async def run_wrapper(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes, float]:
    """`heartbeatd run ARGS` as a process: exit code, output, and its wall time."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heartbeatd", "run", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out, err, loop.time() - began


async def test_a_job_exits_at_once_when_the_monitor_refuses_the_connection(
    tmp_path: Path,
) -> None:
    """The real command against a closed port: the job's own time plus start-up, no retries."""
    closed = f"http://127.0.0.1:{free_port()}/ping"
    code, out, err, took = await run_wrapper(
        wrapper_env(), "--db", str(tmp_path / "none.db"), "--url", closed,
        "--check", str(uuid.uuid4()), "--", "sh", "-c", "echo ran; exit 3",
    )  # fmt: skip
    assert (code, out) == (3, b"ran\n")
    assert err.decode().count("\n") == 1 and "Connection refused" in err.decode()
    assert took < 5.0  # start-up; the retries alone took 15 s


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--url", "{endpoint}"], {}),
        (["--url", "{endpoint}/"], {"HC_API_URL": "{closed}"}),
        ([], {"HC_API_URL": "{endpoint}"}),
        ([], {"HEARTBEATD_URL": "{site}", "HC_API_URL": "{closed}"}),
        ([], {"HC_API_URL": "{endpoint}", "HEARTBEATD_SITE_URL": "{closed}"}),
    ],
)
async def test_the_url_may_be_the_ping_endpoint_as_runitor_users_write_it(
    daemon: Daemon, tmp_path: Path, flags: list[str], env: dict[str, str]
) -> None:
    """--url, then HEARTBEATD_URL, then HC_API_URL, then the config's site_url; each may be
    the site or its /ping endpoint (it was pinged at /ping/ping/<uuid>: 404)."""
    check = await daemon.add()
    site = str(daemon.client.make_url("")).rstrip("/")
    urls = {"site": site, "endpoint": f"{site}/ping", "closed": f"http://127.0.0.1:{free_port()}"}
    args = [flag.format(**urls) for flag in flags]
    variables = {name: value.format(**urls) for name, value in env.items()}
    code, _, err, _ = await run_wrapper(
        wrapper_env(**variables), "--db", str(tmp_path / "none.db"), *args,
        "--check", check.uuid, "--", "true",
    )  # fmt: skip
    assert (code, err) == (0, b"")
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("success", 0)]


async def test_an_unknown_check_is_not_retried(daemon: Daemon) -> None:
    run = await wrap(str(daemon.client.make_url(f"/ping/{uuid.uuid4()}")), "true")
    assert run.code == 0 and run.sleeps == []
    assert "HTTP 404 not found" in run.stderr.decode()


async def test_a_503_is_retried_until_the_monitor_answers(
    daemon: Daemon, aiohttp_server: Any
) -> None:
    """A proxy in front of the daemon that refuses each first request with 503."""
    check = await daemon.add()
    seen: set[str] = set()
    session = ClientSession()

    async def flaky(request: web.Request) -> web.Response:
        if request.path_qs not in seen:
            seen.add(request.path_qs)
            return web.Response(status=503, text="busy")
        target = daemon.client.make_url(request.path_qs)
        async with session.post(target, data=await request.read()) as answer:
            return web.Response(status=answer.status, text=await answer.text())

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", flaky)
    proxy = await aiohttp_server(app)
    try:
        run = await wrap(str(proxy.make_url(f"/ping/{check.uuid}")), "sh", "-c", "exit 0")
    finally:
        await session.close()
    assert run.code == 0 and run.stderr == b""
    assert run.sleeps == [1, 1]
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("success", 0)]


async def test_a_slow_monitor_does_not_delay_the_job(
    daemon: Daemon, aiohttp_server: Any, tmp_path: Path
) -> None:
    """The start ping is held by a proxy until the job has run; the pings still come in order."""
    check = await daemon.add()
    release = asyncio.Event()
    session = ClientSession()

    async def slow_start(request: web.Request) -> web.Response:
        if request.path.endswith("/start"):
            await release.wait()
        target = daemon.client.make_url(request.path_qs)
        async with session.post(target, data=await request.read()) as answer:
            return web.Response(status=answer.status, text=await answer.text())

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow_start)
    proxy = await aiohttp_server(app)
    ran = tmp_path / "ran"
    job = asyncio.ensure_future(wrap(str(proxy.make_url(f"/ping/{check.uuid}")), "touch", str(ran)))
    try:
        await eventually(ran.exists)
        assert await pings(daemon) == []  # the job is done; its start ping is still on its way
        release.set()
        assert (await job).code == 0
    finally:
        await session.close()
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("success", 0)]


async def test_the_command_line_forwards_sigterm_and_exits_with_the_jobs_code(
    daemon: Daemon,
) -> None:
    """`heartbeatd run` as cron starts it: a slug, the ping key, a job that traps SIGTERM."""
    await daemon.add("nightly")
    key = await daemon.store.ping_key()
    # No background child: one started with `&` can still carry the shell's trap handler when
    # a TERM sent right after "ready" reaches it, and sleep then keeps the pipes for 30 s.
    job = "trap 'echo stopping; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    wrapper = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heartbeatd", "run", "--check", "nightly", "--ping-key", key,
        "--url", str(daemon.client.make_url("/")).rstrip("/"), "--", "sh", "-c", job,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert wrapper.stdout is not None
    assert await asyncio.wait_for(wrapper.stdout.readline(), 10) == b"ready\n"
    wrapper.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(wrapper.communicate(), 10)
    assert wrapper.returncode == 7, err
    assert out == b"stopping\n"
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("fail", 7)]


async def test_a_slug_without_a_ping_key_still_runs_the_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    wrapper = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heartbeatd", "run", "--db", str(tmp_path / "none.db"),
        "--check", "nightly", "--", "sh", "-c", "echo ran; exit 4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await wrapper.communicate()
    assert wrapper.returncode == 4 and out == b"ran\n"
    assert err.decode().count("\n") == 1 and "HEARTBEATD_PING_KEY" in err.decode()
    assert not (tmp_path / "none.db").exists()


async def test_a_slug_url_with_create_makes_the_check_on_the_first_run(daemon: Daemon) -> None:
    key = await daemon.store.ping_key()
    url = str(daemon.client.make_url(f"/ping/{key}/new-job")) + "?create=1"
    run = await wrap(url, "true")
    assert run.code == 0 and run.stderr == b""
    assert await daemon.query("SELECT slug, status FROM checks") == [("new-job", "up")]


async def test_a_job_declares_its_own_check_on_its_first_run(
    daemon: Daemon, tmp_path: Path
) -> None:
    """`heartbeatd run --check SLUG --cron … --grace …` creates the check as declared (issue
    20), so a crontab line alone sets up its monitoring; a later run with another schedule
    changes it."""
    site = str(daemon.client.make_url("")).rstrip("/")
    key = await daemon.store.ping_key()
    base = ("--db", str(tmp_path / "none.db"), "--url", site, "--ping-key", key, "--check", "etl")
    declared = ("--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--grace", "1h")
    code, _, err, _ = await run_wrapper(wrapper_env(), *base, *declared, "--", "true")
    assert (code, err) == (0, b"")
    sql = "SELECT cron, tz, grace, period FROM checks WHERE slug = 'etl'"
    assert await daemon.query(sql) == [("0 3 * * *", "Europe/Berlin", 3600.0, None)]
    assert [p[:2] for p in await pings(daemon)] == [("start", None), ("success", 0)]
    code, _, err, _ = await run_wrapper(wrapper_env(), *base, "--period", "6h", "--", "true")
    assert (code, err) == (0, b"")
    assert (await daemon.query(sql))[0][3] == 6 * 3600.0
