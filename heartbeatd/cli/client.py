"""`heartbeatd run`: wrap a job so the monitor learns when it starts, how it ends and what it said.

The job always comes first: a monitor that is down, slow or misconfigured costs at most a bounded
wait and one warning line on stderr, never the job's run or its exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, BinaryIO

from heartbeatd import __version__

DEFAULT_BODY_LIMIT = 100_000
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # five tries in all
RETRY_BUDGET = 30.0  # seconds one ping may take, retries and timeouts included
REQUEST_TIMEOUT = 10.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A monitor too slow to answer, or one that dropped the request (restarting, overloaded).
RETRYABLE_ERRORS = (TimeoutError, ConnectionResetError)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CHUNK = 65536
# How long to keep reading after the job exits. A background process it left behind (a
# restarted service) may hold its output pipes open for days; the report should not wait.
DRAIN_AFTER_EXIT = 5.0


class PingFailed(Exception):
    """A ping that did not get through; its text ends up in the one warning line."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass
class Pinger:
    """Sends one check's pings with a run id, retrying what a later try could fix.

    Timeouts, dropped connections, 5xx and 429 are retried with exponential backoff inside a
    total time budget. The rest is final at once: a 404 (unknown check), a refused connection,
    an unknown host or a bad certificate, which a try seconds later would meet again while
    the job's exit waited for it.
    """

    check_url: str
    rid: str
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    delays: Sequence[float] = RETRY_DELAYS
    budget: float = RETRY_BUDGET

    def send(self, action: str, body: bytes = b"") -> Message:
        """POST `<check_url>/<action>?rid=…`; returns the answer's headers or raises PingFailed."""
        url = action_url(self.check_url, action, self.rid)
        give_up = self.monotonic() + self.budget
        for delay in (*self.delays, None):
            timeout = min(REQUEST_TIMEOUT, give_up - self.monotonic())
            try:
                return self._post(url, body, max(timeout, 0.1))
            except PingFailed as e:
                if not e.retryable or delay is None or self.monotonic() + delay >= give_up:
                    raise
            self.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")

    def _post(self, url: str, body: bytes, timeout: float) -> Message:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"User-Agent": f"heartbeatd-run/{__version__}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                headers: Message = response.headers  # urlopen is typed Any: any scheme's answer
                return headers
        except urllib.error.HTTPError as e:
            with e:
                reason = e.read(200).decode("utf-8", "replace").strip() or e.reason
            raise PingFailed(f"HTTP {e.code} {reason}", e.code in RETRYABLE_STATUS) from None
        except OSError as e:  # URLError (which wraps the socket's error), timeouts
            cause = e.reason if isinstance(e, urllib.error.URLError) else e
            raise PingFailed(str(cause), isinstance(cause, RETRYABLE_ERRORS)) from None
        except ValueError as e:  # a malformed URL: no later try fixes it
            raise PingFailed(str(e), False) from None


def action_url(check_url: str, action: str, rid: str) -> str:
    """`<check_url>/<action>?rid=…`, keeping a query the URL already has (`?create=1`)."""
    parts = urllib.parse.urlsplit(check_url)
    query = "&".join(q for q in (parts.query, f"rid={rid}") if q)
    return parts._replace(path=f"{parts.path.rstrip('/')}/{action}", query=query).geturl()


def declaring(check_url: str, definition: dict[str, str | None]) -> str:
    """The check URL with `?create=1` and the definition the job declares for its check
    (web/declare.py), or as it was when the job declares nothing."""
    given = {name: value for name, value in definition.items() if value is not None}
    if not given:
        return check_url
    parts = urllib.parse.urlsplit(check_url)
    query = urllib.parse.urlencode({"create": "1", **given})
    return parts._replace(query="&".join(q for q in (parts.query, query) if q)).geturl()


def body_limit(headers: Message) -> int:
    """How much output the server keeps (its Ping-Body-Limit header), so we send no more."""
    try:
        return max(0, int(headers["Ping-Body-Limit"]))
    except (TypeError, ValueError):
        return DEFAULT_BODY_LIMIT


@dataclass
class Tail:
    """The last `limit` bytes of the job's stdout and stderr together, in arrival order."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.data += chunk
            self._trim()

    def resize(self, limit: int) -> None:
        """Keep `limit` bytes from now on: the server's limit, known once the start ping returns."""
        with self.lock:
            self.limit = limit
            self._trim()

    def _trim(self) -> None:
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def snapshot(self) -> bytes:
        with self.lock:
            return bytes(self.data)


def _pump(source: BinaryIO, sink: BinaryIO, tail: Tail) -> None:
    """Copy a pipe to our own stream as it arrives, keeping the tail.

    If our own stream breaks (`heartbeatd run … | head`), the pipe is still drained: a job
    blocked on a full pipe would never end, and its end is what we report.
    """
    passing_through = True
    with source:
        while chunk := os.read(source.fileno(), CHUNK):
            tail.add(chunk)
            if passing_through:
                try:
                    _write_all(sink, chunk)
                except (OSError, ValueError):
                    passing_through = False


def _write_all(sink: BinaryIO, chunk: bytes) -> None:
    """Write and flush all of it: an unbuffered stream may take part of a chunk at a time."""
    view = memoryview(chunk)
    while view:
        written = sink.write(view)
        view = view[len(view) if written is None else written :]
    sink.flush()


def exit_code(returncode: int) -> int:
    """A shell's view of how the child ended: 128+N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(argv: Sequence[str], tail: Tail, stdout: BinaryIO, stderr: BinaryIO) -> int:
    """Run the job with its output passed through; its exit code as a shell would report it.

    The child gets its own process group and SIGTERM, SIGINT and SIGHUP are forwarded to it: a
    Ctrl-C at a terminal reaches the job once (not from the terminal and again from us), and
    whatever stops the job, we stay to report how it ended.
    """
    with SignalForwarder() as forwarder:
        try:
            child = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
            )
        except OSError as e:
            message = f"heartbeatd run: {argv[0]}: {e.strerror}\n".encode()
            _write_all(stderr, message)
            tail.add(message)
            return 127 if isinstance(e, FileNotFoundError) else 126
        forwarder.attach(child)
        assert child.stdout is not None and child.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(child.stdout, stdout, tail), daemon=True),
            threading.Thread(target=_pump, args=(child.stderr, stderr, tail), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        returncode = child.wait()
        drained = time.monotonic() + DRAIN_AFTER_EXIT
        for pump in pumps:
            pump.join(max(0.0, drained - time.monotonic()))
    return exit_code(returncode)


class SignalForwarder:
    """While active, the FORWARDED_SIGNALS sent to us go to the child instead of ending us.

    Handlers are set before the child starts; a signal that comes before it exists is held
    and delivered once it does, so there is no moment where a stop request kills only us.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.held: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():  # tests use worker threads
            self.previous = {signum: signal.signal(signum, self._forward)
                             for signum in FORWARDED_SIGNALS}  # fmt: skip
        return self

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        for signum in self.held:
            child.send_signal(signum)

    def _forward(self, signum: int, _frame: object) -> None:
        if self.child is None:
            self.held.append(signum)
        elif self.child.poll() is None:
            self.child.send_signal(signum)

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_job(
    argv: Sequence[str],
    pinger: Pinger,
    stdout: BinaryIO,
    stderr: BinaryIO,
) -> int:
    """Start ping, the job, exit-status ping with the output tail; the job's exit code.

    The start ping goes out while the job starts, so a slow or unreachable monitor never delays
    the job; the final ping waits for it, so the two arrive in order. Failed pings are collected
    into one warning line at the end rather than one per try.
    """
    lost: list[str] = []
    tail = Tail(DEFAULT_BODY_LIMIT)

    def announce() -> None:
        try:
            tail.resize(body_limit(pinger.send("start")))
        except PingFailed as e:
            lost.append(f"start: {e}")

    starting = threading.Thread(target=announce, daemon=True)
    starting.start()
    code = run_command(argv, tail, stdout, stderr)
    starting.join()
    try:
        pinger.send(str(code), tail.snapshot())
    except PingFailed as e:
        lost.append(f"exit status {code}: {e}")
    if lost:
        warn(stderr, f"ping failed ({'; '.join(lost)})")
    return code


def warn(stderr: BinaryIO, text: str) -> None:
    _write_all(stderr, f"heartbeatd run: warning: {text}\n".encode())


def unbuffered(fd: int) -> BinaryIO:
    """Our stdout or stderr without a buffer: the job's bytes leave as they arrive, and a
    reader that went away leaves nothing behind to fail at exit."""
    return open(fd, "wb", buffering=0, closefd=False)


def site_root(url: str) -> str:
    """The site's URL from what a user gives as it: the site itself, or its ping endpoint
    (`http://host:8000/ping`, as runitor's HC_API_URL and self-hosted Healthchecks write it)."""
    parts = urllib.parse.urlsplit(url.rstrip("/"))
    return parts._replace(path=parts.path.removesuffix("/ping")).geturl()


def check_url(target: str, site_url: str, ping_key: Callable[[], str | None]) -> str:
    """The ping URL for a full URL, a check's UUID, or a slug (which needs the ping key)."""
    if target.startswith(("http://", "https://")):
        return target
    site = site_url.rstrip("/")
    try:
        return f"{site}/ping/{uuid.UUID(target)}"
    except ValueError:
        pass
    key = ping_key()
    if not key:
        raise PingFailed(
            f"{target!r} is a slug, and slug URLs need the ping key: pass --ping-key or set "
            "HEARTBEATD_PING_KEY (heartbeatd ping-key prints it)",
            retryable=False,
        )
    return f"{site}/ping/{key}/{target}"
