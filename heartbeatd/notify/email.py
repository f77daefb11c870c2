"""The `email` notifier: one plain-text mail per event through an SMTP server.

It uses aiosmtplib because it is asyncio-native (no thread per send, and the dispatcher's
timeout cancels a hung server cleanly) and speaks what real mail servers require: STARTTLS on
587, implicit TLS on 465, plain on 25, and AUTH LOGIN/PLAIN/CRAM-MD5. One connection per
message: alerts are rare, and a kept-open connection would be dropped by most servers anyway.

The Message-ID is derived from the event's idempotency key, so when a crash makes the dispatcher
send a notification again, systems that de-duplicate by Message-ID show it once. The replies
the server gives decide retries: a refused login, sender, recipient or message (5xx) will stay
refused, so it fails for good; a 4xx, a timeout or a refused connection is retried.
Error messages carry the server's reply, never the password.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPTimeoutError,
)

from heartbeatd.core.model import unique_key
from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.options import OptionError, Options

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
BODY_LIMIT = 10_000  # of the last ping's output; mail has room for more than a chat message


class EmailNotifier:
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("email", options)
        self.name = name
        self.host: str = read.str("host")
        if not self.host.strip():
            raise OptionError("host", "expected the SMTP server's name or address")
        self.security: str = read.choice("security", SECURITY, "starttls")
        self.port: int = read.int("port", DEFAULT_PORTS[self.security], low=1, high=65535)
        self.username: str | None = read.str("username", None)
        self.password: str | None = read.str("password", None)
        if self.password is not None and self.username is None:
            raise OptionError("password", "given without a username")
        if self.username is not None and self.password is None:
            raise OptionError("username", "given without a password (or password_file)")
        self.sender: str = _address(read.str("from"), "from")
        self.recipients: list[str] = [_address(a, "to") for a in read.str_list("to")]
        if not self.recipients:
            raise OptionError("to", "expected at least one address")
        self.timeout: float = read.duration("timeout", 10.0)
        if not self.timeout > 0:
            raise OptionError("timeout", "must be longer than 0s")
        verify: bool = read.bool("verify", True)
        ca_file: str | None = read.str("ca_file", None)
        read.done()
        if self.security == "none" and ca_file is not None:
            raise OptionError("ca_file", 'not used with security = "none"')
        if not verify and ca_file is not None:
            raise OptionError("ca_file", "not used with verify = false")
        self.tls_context = None if self.security == "none" else _tls_context(verify, ca_file)

    async def send(self, event: Event) -> None:
        try:
            await self._send(message(event, self.sender, self.recipients))
        except NotifyError as e:
            raise NotifyError(self._scrub(str(e)), e.permanent) from None

    async def _send(self, mail: EmailMessage) -> None:
        where = f"{self.host}:{self.port}"
        client = SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=False,  # done below, so a server without STARTTLS is an error
            tls_context=self.tls_context,
            timeout=self.timeout,
        )
        try:
            async with client:
                if self.security == "starttls":
                    await client.ehlo()
                    if not client.supports_extension("starttls"):
                        raise NotifyError(
                            f'{where} does not offer STARTTLS; set security = "tls" for port '
                            f'465, or "none" if the server really has no TLS',
                            permanent=True,
                        )
                    await client.starttls()
                if self.username is not None and self.password is not None:
                    await client.login(self.username, self.password)
                refused, _ = await client.send_message(mail)
        except SMTPAuthenticationError as e:
            raise NotifyError(f"{where} refused the login: {_reply(e)}", permanent=True) from None
        except SMTPRecipientsRefused as e:
            raise _refused(e.recipients) from None
        except SMTPRecipientRefused as e:
            raise _refused([e]) from None
        except SMTPSenderRefused as e:
            raise NotifyError(
                f"{where} refused the sender {e.sender}: {_reply(e)}", permanent=_is_5xx(e.code)
            ) from None
        except SMTPResponseException as e:
            raise NotifyError(f"{where} answered {_reply(e)}", permanent=_is_5xx(e.code)) from None
        except SMTPTimeoutError as e:
            raise NotifyError(f"{where}: {e.message or 'timed out'}") from None
        except SMTPException as e:  # a refused connection, a dropped one
            raise NotifyError(e.message or type(e).__name__) from None
        except ssl.SSLCertVerificationError as e:  # may be renewed or fixed: retried
            raise NotifyError(f"{where}: certificate verify failed: {e.verify_message}") from None
        except ssl.SSLError as e:
            raise NotifyError(f"TLS with {where} failed: {e.reason or e}") from None
        except OSError as e:
            raise NotifyError(f"cannot talk to {where}: {e.strerror or e}") from None
        if refused:
            # Delivered to the others; retrying would send them a second copy.
            said = "; ".join(f"{to} ({r.code} {r.message})" for to, r in refused.items())
            raise NotifyError(f"sent, but {where} refused {said}", permanent=True)

    def _scrub(self, text: str) -> str:
        """A server may echo what it was sent; the password never reaches a log or the db."""
        return text.replace(self.password, "<password>") if self.password else text

    async def close(self) -> None:
        pass


def message(event: Event, sender: str, recipients: list[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = " ".join(event.summary.splitlines())  # a name must not add headers
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = format_datetime(datetime.fromtimestamp(event.now or time.time(), UTC))
    mail["Message-ID"] = message_id(event)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    mail["X-Heartbeatd-Event"] = event.kind
    mail["X-Heartbeatd-Check"] = unique_key(event.check.uuid)  # mail is kept and forwarded:
    # a header must not carry the check's ping URL
    mail.set_content(event.text(BODY_LIMIT))
    return mail


def message_id(event: Event) -> str:
    """The same for every attempt at one notification, different for every other one: the
    event's key, plus the check's unique_key (random, like its UUID, but no ping URL) to keep
    two installations (each numbering its notifications from 1) apart in one mailbox."""
    return f"<{event.key}.{unique_key(event.check.uuid)[:32]}@heartbeatd>"  # one line


def _address(value: str, key: str) -> str:
    if "\r" in value or "\n" in value:
        raise OptionError(key, f"expected an email address, got {value!r}")
    parsed = getaddresses([value])
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        raise OptionError(key, f"expected one email address like hb@example.org, got {value!r}")
    return value


def _tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise OptionError("ca_file", f"cannot load {ca_file}: {e}") from None


def _reply(error: SMTPResponseException) -> str:
    return f"{error.code} {error.message}".strip()


def _is_5xx(code: int) -> bool:
    return 500 <= code < 600


def _refused(errors: list[SMTPRecipientRefused]) -> NotifyError:
    said = "; ".join(f"{e.recipient} ({_reply(e)})" for e in errors)
    return NotifyError(f"recipient refused: {said}", permanent=all(_is_5xx(e.code) for e in errors))
