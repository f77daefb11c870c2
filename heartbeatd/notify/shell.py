"""The `shell` notifier: runs a command of your choosing for each event, without a shell.

`command` is the argv to run: a list of strings, or one string split into words once at
start-up by shlex (quotes group words; there is no $expansion, globbing, pipe or `;`). The
event reaches the command only through HB_* environment variables, added to heartbeatd's own
environment (so PATH and HOME are there); it is never put into the arguments, so a check named
`x; rm -rf /` is text in $HB_NAME and nothing else.

The command runs in a process group of its own and is done when it has exited and closed its
output (as with subprocess.run: anything it leaves running in the background should not keep
stdout/stderr open). If it is not done within `timeout`, the whole group is killed (a script's
`sleep` or `curl` too) and reaped, and the attempt is retried later, as is a non-zero exit,
whose error gives the end of what the command wrote on stderr (or stdout, if stderr is empty).
A command that cannot be found or run fails for good: retrying will not install it.
The config refuses this notifier unless `enable_shell = true` (see config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import signal
from collections.abc import Mapping

from heartbeatd.core.durations import format_duration
from heartbeatd.notify import Event, NotifyError, iso
from heartbeatd.notify.options import OptionError, Options

BODY_LIMIT = 10_000  # characters of the last ping's output in HB_BODY
ERROR_TAIL = 200  # characters of stderr in the error message
KEEP_BYTES = 4096  # of each output stream, to cut the error tail from
REAP_GRACE = 1.0  # after a kill, how long to wait for the group's pipes to close
TIMEOUT_MARGIN = 5.0  # the dispatcher's limit: our own timeout plus time to kill and reap
UNRUNNABLE = {errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP}


class ShellNotifier:
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("shell", options)
        self.name = name
        self.command = _command(read, options.get("command"))
        self.limit: float = read.duration("timeout", 30.0)
        if not self.limit > 0:
            raise OptionError("timeout", "must be longer than 0s")
        read.done()
        # The dispatcher cancels a send after `timeout`; we kill the command at `limit` and
        # need a moment more to reap it and say so.
        self.timeout = self.limit + TIMEOUT_MARGIN

    async def send(self, event: Event) -> None:
        program = self.command[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment(event),
                start_new_session=True,  # its own process group, to kill all of it
            )
        except FileNotFoundError:
            raise NotifyError(f"command not found: {program}", permanent=True) from None
        except OSError as e:
            raise NotifyError(
                f"cannot run {program}: {e.strerror or e}", permanent=e.errno in UNRUNNABLE
            ) from None
        # Read both pipes to the end (a full pipe would stall the command), keeping the tails.
        output = asyncio.gather(_tail(process.stdout), _tail(process.stderr))
        finished = False
        try:
            async with asyncio.timeout(self.limit):
                stdout, stderr = await asyncio.shield(output)
                code = await process.wait()
            finished = True
        except TimeoutError:
            raise NotifyError(
                f"command did not finish within {format_duration(self.limit)} and was killed"
            ) from None
        finally:
            if not finished:  # timed out, or the daemon is stopping
                await _kill(process, output)
        if code != 0:
            raise NotifyError(_failure(code, stderr or stdout))

    async def close(self) -> None:
        pass


def _command(read: Options, given: object) -> list[str]:
    if isinstance(given, str):
        text: str = read.str("command")
        try:
            argv = shlex.split(text)
        except ValueError as e:
            # Not repeated: a command may hold a token (curl -H "Authorization: ...").
            raise OptionError("command", f"cannot split it into words: {e}") from None
    else:
        argv = read.str_list("command")
    if not argv:
        raise OptionError("command", "expected the program to run and its arguments")
    return argv


def environment(event: Event) -> dict[str, str]:
    """heartbeatd's environment plus the event, as HB_* variables."""
    check = event.check
    values = {
        "HB_EVENT": event.kind,
        "HB_NAME": check.name,
        "HB_SLUG": check.slug,
        "HB_UUID": check.uuid,
        "HB_STATUS": str(event.flip.new),
        "HB_SUMMARY": event.summary,
        "HB_TAGS": check.tags,
        "HB_REASON": event.flip.reason,
        "HB_DETAIL": event.flip.detail,
        "HB_URL": event.check_url,
        "HB_PING_URL": event.ping_url,
        "HB_BODY": event.output_tail(BODY_LIMIT),
        "HB_TIME": iso(event.flip.at) or "",
    }
    env = dict(os.environ)
    # A NUL cannot be in the environment; a job's output may hold one.
    env.update({key: value.replace("\0", "") for key, value in values.items()})
    return env


async def _tail(stream: asyncio.StreamReader | None) -> bytes:
    kept = b""
    if stream is not None:
        while chunk := await stream.read(65536):
            kept = (kept + chunk)[-KEEP_BYTES:]
    return kept


async def _kill(
    process: asyncio.subprocess.Process, output: asyncio.Future[tuple[bytes, bytes]]
) -> None:
    """Kill the command's process group, reap the command, and let its pipes close."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(REAP_GRACE):
            await process.wait()
            await asyncio.wait([output])  # EOF once every member of the group is gone
    except TimeoutError:
        pass  # a child that left the group still holds a pipe; stop reading it
    finally:
        if not output.done():
            output.cancel()
            output.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
            # asyncio offers no public way to let go of a subprocess's pipes early; without
            # this the open transport is only found (and warned about) by the GC.
            process._transport.close()  # type: ignore[attr-defined]


def _failure(code: int, stderr: bytes) -> str:
    if code < 0:
        try:
            what = f"command was killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"command was killed by signal {-code}"
    else:
        what = f"command exited with {code}"
    tail = stderr.decode("utf-8", "replace").strip()[-ERROR_TAIL:].strip()
    return f"{what}: {tail}" if tail else what
