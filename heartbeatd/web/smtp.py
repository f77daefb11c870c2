"""E-mailed pings: mail to <uuid>@<any domain> or <ping-key>+<slug>@<any domain> pings that
check, as Healthchecks' `manage.py smtpd` takes it (PROTOCOL.md §1.1). Off unless smtp_listen.

aiosmtpd's SMTP protocol serves on the daemon's own loop (loop.create_server, not aiosmtpd's
threaded Controller), so a message becomes a PingIn recorded by ping.record like a URL's ping,
and its 250 goes out only once each recipient's ping is on disk. The message, headers and
body, is the ping's body, kept up to ping_body_limit; a check's filter_subject and filter_body
keywords judge it (core/rules/email.py). As in Healthchecks the ping's source is the SMTP
peer, its user agent "Email from <sender>", its scheme "email" and its method empty.

Unlike Healthchecks, which takes any well-formed address and drops the message later, an
unknown recipient is refused at RCPT (550), so a guess costs no DATA; each refusal is charged
to its source's 404 bucket (ratelimit.py), so guessing addresses is slowed by the same limit
as guessing URLs, and either kind of guess counts against both doors. Nothing a client sends
is held without a bound:
- each command, a message's data included, must arrive within smtp_timeout of the last one
  (aiosmtpd's timeout, which only a valid command resets), and a session ends after
  SESSION_TIMEOUTS times that, however busy the client keeps it;
- a command line is at most 512 bytes (aiosmtpd), a message at most MESSAGE_CAP or
  ping_body_limit bytes, whichever is larger (aiosmtpd's data_size_limit: the data past it is
  read and dropped, then refused with 552), and a message goes to at most MAX_RECIPIENTS.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from heartbeatd.core.config import split_listen
from heartbeatd.core.errors import BadRequest, Conflict, NotFound, Unavailable
from heartbeatd.core.rules.email import read_message
from heartbeatd.store import BySlug, ByUuid, PingIn
from heartbeatd.web.keys import CLOCK, CONFIG, STORE
from heartbeatd.web.ping import MAX_UA, UUID_FORM, by_slug, record
from heartbeatd.web.ratelimit import MISS_LIMITER, bucket_key

log = logging.getLogger("heartbeatd")

# Sessions at once: a stranger opening connections by the thousand gets 421 past this, as
# mail servers answer; a sender retries later, as it does for any 4xx.
MAX_SESSIONS = 100
MESSAGE_CAP = 1_000_000  # bytes of a message taken, when ping_body_limit is smaller
MAX_RECIPIENTS = 100  # per message; RFC 5321 §4.5.3.1.8: a server must take at least 100
SESSION_TIMEOUTS = 10  # a session's length, in smtp_timeouts

UNKNOWN = "550 5.1.1 No such check"
OK = "250 OK"


def recipient(address: str) -> ByUuid | BySlug | None:
    """Whose ping an address is: <uuid>@... or <ping-key>+<slug>@..., any domain (a relay or
    an MX record decides which mail reaches us); None for any other address."""
    mailbox = address.rpartition("@")[0] or address
    if UUID_FORM.fullmatch(mailbox.lower()):
        return ByUuid(mailbox.lower())
    key, plus, slug = mailbox.partition("+")
    if not plus:
        return None
    try:
        return by_slug(key, slug)
    except (NotFound, BadRequest):  # not a key and slug; a slug in upper case
        return None


def peer_address(session: Session) -> str:
    peer: object = session.peer  # typed str by aiosmtpd; a socket's (host, port) in fact
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


class PingHandler:
    """aiosmtpd's hooks for the app's checks: recipients are checked at RCPT, messages
    recorded at DATA."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        limiter, clock = self.app[MISS_LIMITER], self.app[CLOCK]
        source = bucket_key(peer_address(session))
        if limiter.wait(source, clock.monotonic()) > 0:  # held, as ratelimit.py holds a 429
            await asyncio.sleep(limiter.hold(source, asyncio.get_running_loop().time()))
            return "450 4.7.1 Too many unknown recipients; try again later"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        target = recipient(address)
        if target is None or not await self.app[STORE].knows(target):
            limiter.charge(source, clock.monotonic())
            return UNKNOWN
        envelope.rcpt_tos.append(address)
        return OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """One ping per check addressed, written together; 250 once all are on disk, 451 if
        the database could not take them (the sender tries again), 550 if every check went
        since RCPT."""
        data = envelope.original_content or b""
        limit = self.app[CONFIG].ping_body_limit
        incoming = PingIn(
            action="success", exit_status=None, rid=None, method="", scheme="email",
            remote_addr=peer_address(session), ua=f"Email from {envelope.mail_from}"[:MAX_UA],
            body=data[:limit], body_size=len(data),
            email=await asyncio.to_thread(read_message, data),  # bounded, yet not the loop's
        )  # fmt: skip
        targets = dict.fromkeys(t for t in map(recipient, envelope.rcpt_tos) if t is not None)
        results = await asyncio.gather(
            *(record(self.app, target, incoming) for target in targets), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(failure, Unavailable) for failure in failures):
            return "451 4.3.0 Cannot store the ping now; try again later"
        for failure in failures:
            if not isinstance(failure, NotFound | Conflict):  # Conflict: an ambiguous slug
                raise failure
        return OK if len(failures) < len(results) else UNKNOWN

    async def handle_exception(self, error: Exception) -> str:
        """One log line, not aiosmtpd's traceback, and a temporary failure for the sender."""
        log.error("e-mailed ping: %s: %s", type(error).__name__, error)
        return "451 4.3.0 Internal error; try again later"


class PingSession(SMTP):
    """aiosmtpd's SMTP protocol with a deadline for the whole session (see the module doc)."""

    def __init__(self, handler: PingHandler, length: float, sessions: set[PingSession],
                 **options: object) -> None:  # fmt: skip
        super().__init__(handler, **options)  # type: ignore[arg-type]
        self.length = length
        self.sessions = sessions
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.sessions) >= MAX_SESSIONS:  # each is short, but their number is not
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections; try again later\r\n")
            transport.close()
            return
        super().connection_made(transport)
        self.sessions.add(self)
        self.deadline = self.loop.call_later(self.length, transport.close)

    def connection_lost(self, error: Exception | None) -> None:
        if self not in self.sessions:
            return  # refused in connection_made: aiosmtpd never started on it
        self.sessions.discard(self)
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(error)


class Listener:
    """The SMTP listener's lifetime: bound first, so a taken port stops start-up before
    anything else starts; serving once the store is open; closed, its sessions with it,
    before the store closes."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.sessions: set[PingSession] = set()
        self.server: asyncio.Server | None = None

    async def bind(self) -> None:
        config = self.app[CONFIG]
        host, port = split_listen(config.smtp_listen)
        handler = PingHandler(self.app)
        loop = asyncio.get_running_loop()

        def session() -> PingSession:
            return PingSession(
                handler, config.smtp_timeout * SESSION_TIMEOUTS, self.sessions,
                data_size_limit=max(config.ping_body_limit, MESSAGE_CAP),
                timeout=config.smtp_timeout, loop=loop, ident="heartbeatd",
                # aiosmtpd would look up the machine's name in DNS for every connection
                hostname=urlsplit(config.site_url).hostname or "heartbeatd",
            )  # fmt: skip

        try:
            self.server = await loop.create_server(session, host, port, start_serving=False)
        except OSError as e:
            raise Unavailable(f"cannot listen on {config.smtp_listen}: {e.strerror}") from None

    async def serve(self) -> None:
        assert self.server is not None
        await self.server.start_serving()
        addresses = ", ".join(f"{s.getsockname()[0]}:{self.port}" for s in self.server.sockets)
        log.info("taking e-mailed pings on %s", addresses)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for open_session in list(self.sessions):
            if open_session.transport is not None:
                open_session.transport.close()
        await self.server.wait_closed()


LISTENER = web.AppKey("smtp_listener", Listener)
