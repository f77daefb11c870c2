"""The email notifier against a real SMTP server (aiosmtpd) on loopback: plain, AUTH, STARTTLS,
implicit TLS, refusals, and a check going down in the running daemon."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from heartbeatd.core.config import ConfigError
from heartbeatd.core.model import unique_key
from heartbeatd.notify import NotifyError
from heartbeatd.notify.email import EmailNotifier
from heartbeatd.notify.options import OptionError
from tests.conftest import Daemon, eventually
from tests.notify_helpers import T0, UUID, make_event

USER = "alerts"
PASSWORD = "correct-horse-battery-staple"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: bytes | None  # who authenticated, if anyone
    tls: bool


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and refuses addresses it is told to."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.auth_data, tls)
        )
        return "250 2.0.0 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers a failure with its "535 5.7.8 ..." itself
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


class TidyController(Controller):
    """A Controller that closes the sessions still open when it stops. Controller.stop() leaves
    them to the garbage collector, whose "unclosed transport" warning would then fail whichever
    later test happens to be running when it collects them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        session = super().factory()
        self.sessions.append(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop).result(timeout=5)
        super().stop(no_assert)

    async def _close_sessions(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.abort()
        await asyncio.sleep(0)  # the sockets close in the callbacks abort() scheduled


@dataclass
class Server:
    mailbox: Mailbox
    port: int


@pytest.fixture
def smtp_server(unused_tcp_port_factory: Callable[[], int]) -> Iterator[Callable[..., Server]]:
    """Start an aiosmtpd server on 127.0.0.1 with the given SMTP options; stopped after."""
    controllers: list[Controller] = []

    def start(**options: Any) -> Server:
        options.setdefault("authenticator", authenticator)
        options.setdefault("auth_require_tls", False)
        mailbox = Mailbox()
        port = unused_tcp_port_factory()
        controller = TidyController(
            mailbox, hostname="127.0.0.1", port=port, server_hostname="mail.test", **options
        )
        controller.start()
        controllers.append(controller)
        return Server(mailbox, port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a self-hosted mail server might have."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=mail.test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def notifier(port: int, **options: Any) -> EmailNotifier:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "heartbeatd <hb@example.org>",
        "to": ["ops@example.org", "dev@example.org"],
        "timeout": "5s",
    }
    return EmailNotifier("mail", values | options)


async def test_it_mails_the_alert_to_every_recipient(smtp_server) -> None:
    server = smtp_server()
    await notifier(server.port).send(make_event(name="nightly backup", slug="nightly-backup"))
    [mail] = server.mailbox.received
    assert mail.mail_from == "hb@example.org"
    assert mail.rcpt_tos == ["ops@example.org", "dev@example.org"]
    message = mail.message
    assert message["Subject"] == "nightly backup is DOWN (missed ping)"
    assert message["From"] == "heartbeatd <hb@example.org>"
    assert message["To"] == "ops@example.org, dev@example.org"
    assert parsedate_to_datetime(message["Date"]).timestamp() == T0 + 60
    assert message["Message-ID"] == f"<heartbeatd-11.{unique_key(UUID)[:32]}@heartbeatd>"
    assert message["X-Heartbeatd-Check"] == unique_key(UUID)
    assert UUID not in message.as_string()  # no header or link gives the ping URL away
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("nightly backup is DOWN (missed ping)\n")
    assert "pg_dump: error: connection refused" in body  # the job's output
    assert f"http://hb.test/checks/{unique_key(UUID)}" in body
    assert mail.login is None and not mail.tls


async def test_a_resent_alert_keeps_its_message_id_and_others_get_new_ones(smtp_server) -> None:
    server = smtp_server()
    mail = notifier(server.port, to="ops@example.org")
    await mail.send(make_event("down", outbox_id=11))
    await mail.send(make_event("down", outbox_id=11))  # after a crash: the same notification
    await mail.send(make_event("repeat", outbox_id=12))  # a reminder of the same outage
    await mail.send(make_event("down", outbox_id=11, uuid="0d6f3c1e-2a4b-4c5d-8e9f-a0b1c2d3e4f5"))
    ids = [m.message["Message-ID"] for m in server.mailbox.received]
    assert ids[0] == ids[1]  # the recipient's system can drop the duplicate
    assert len({ids[1], ids[2], ids[3]}) == 3  # and has no reason to drop the others


async def test_a_check_name_cannot_add_headers(smtp_server) -> None:
    server = smtp_server()
    await notifier(server.port).send(make_event(name="db\r\nBcc: evil@example.org"))
    message = server.mailbox.received[0].message
    assert message["Bcc"] is None
    assert message["Subject"] == "db Bcc: evil@example.org is DOWN (missed ping)"
    assert server.mailbox.received[0].rcpt_tos == ["ops@example.org", "dev@example.org"]


async def test_it_logs_in_with_username_and_password(smtp_server) -> None:
    server = smtp_server(auth_required=False)
    await notifier(server.port, username=USER, password=PASSWORD).send(make_event())
    assert server.mailbox.received[0].login == USER.encode()


async def test_a_rejected_login_fails_for_good_without_the_password(smtp_server) -> None:
    server = smtp_server()
    wrong = "hunter2-not-it"
    with pytest.raises(NotifyError) as caught:
        await notifier(server.port, username=USER, password=wrong).send(make_event())
    assert caught.value.permanent
    message = str(caught.value)
    assert f"127.0.0.1:{server.port} refused the login: 535" in message
    assert "Authentication credentials invalid" in message  # the server's own words
    assert wrong not in message
    assert server.mailbox.received == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such user here", True), ("450 4.2.1 Mailbox busy, try later", False)],
)
async def test_a_refused_recipient_is_retried_only_on_a_4xx(smtp_server, reply, permanent) -> None:
    server = smtp_server()
    server.mailbox.rcpt_replies["gone@example.org"] = reply
    with pytest.raises(NotifyError) as caught:
        await notifier(server.port, to="gone@example.org").send(make_event())
    assert caught.value.permanent is permanent
    assert str(caught.value) == f"recipient refused: gone@example.org ({reply})"


async def test_one_refused_recipient_of_two_is_reported_without_resending(smtp_server) -> None:
    server = smtp_server()
    server.mailbox.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user here"
    mail = notifier(server.port, to=["ops@example.org", "gone@example.org"])
    with pytest.raises(NotifyError, match=r"gone@example\.org \(550 5\.1\.1 No such") as caught:
        await mail.send(make_event())
    assert caught.value.permanent  # a retry would mail ops@ a second time
    assert [m.rcpt_tos for m in server.mailbox.received] == [["ops@example.org"]]


async def test_a_server_that_is_not_there_is_retried(unused_tcp_port: int) -> None:
    with pytest.raises(NotifyError) as caught:
        await notifier(unused_tcp_port).send(make_event())
    assert not caught.value.permanent
    assert f"127.0.0.1 on port {unused_tcp_port}" in str(caught.value)


async def test_starttls_with_a_self_signed_certificate_and_ca_file(
    smtp_server, certificate
) -> None:
    server = smtp_server(
        tls_context=server_tls(certificate), require_starttls=True, auth_require_tls=True,
        auth_required=True,
    )  # fmt: skip
    mail = notifier(
        server.port, security="starttls", ca_file=str(certificate[0]), username=USER,
        password=PASSWORD,
    )  # fmt: skip
    await mail.send(make_event())
    [received] = server.mailbox.received
    assert received.tls and received.login == USER.encode()
    assert received.message["Subject"] == "backup is DOWN (missed ping)"


async def test_starttls_refuses_a_certificate_it_cannot_verify(smtp_server, certificate) -> None:
    server = smtp_server(tls_context=server_tls(certificate), require_starttls=True)
    with pytest.raises(NotifyError, match="certificate verify failed") as caught:
        await notifier(server.port, security="starttls").send(make_event())
    assert not caught.value.permanent  # the server's certificate may be fixed
    assert server.mailbox.received == []


async def test_starttls_is_required_when_asked_for(smtp_server) -> None:
    server = smtp_server()  # no tls_context: does not offer STARTTLS
    mail = notifier(server.port, security="starttls", username=USER, password=PASSWORD)
    with pytest.raises(NotifyError, match="does not offer STARTTLS") as caught:
        await mail.send(make_event())
    assert caught.value.permanent
    assert server.mailbox.received == []  # and the password was not sent in the clear


async def test_implicit_tls_without_verification(smtp_server, certificate) -> None:
    server = smtp_server(ssl_context=server_tls(certificate))
    await notifier(server.port, security="tls", verify=False).send(make_event())
    assert server.mailbox.received[0].tls


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ({"to": []}, "to", "at least one address"),
        ({"to": "not-an-address"}, "to", "expected one email address"),
        ({"from": "a@example.org, b@example.org"}, "from", "expected one email address"),
        ({"security": "ssl"}, "security", "expected one of starttls, tls, none"),
        ({"port": 70000}, "port", "from 1 to 65535"),
        ({"password": "x"}, "password", "without a username"),
        ({"username": "x"}, "username", "without a password"),
        ({"ca_file": "/nonexistent/ca.pem", "security": "tls"}, "ca_file", "cannot load"),
        ({"ca_file": "/etc/ssl/ca.pem"}, "ca_file", "not used with security"),
        ({"timeout": "0s"}, "timeout", "longer than 0s"),
    ],
)
def test_bad_options_are_refused(options, key, message) -> None:
    with pytest.raises(OptionError) as caught:
        notifier(options.pop("port", 25), **options)
    assert caught.value.key == key
    assert message in caught.value.message


def test_the_port_defaults_to_the_security() -> None:
    options = {"host": "mail.example.org", "from": "hb@example.org", "to": "ops@example.org"}
    ports = {s: EmailNotifier("m", options | {"security": s}).port for s in ("starttls", "tls")}
    assert ports == {"starttls": 587, "tls": 465}
    assert EmailNotifier("m", options | {"security": "none"}).port == 25
    assert EmailNotifier("m", options).port == 587  # STARTTLS is the default


def email_config(port: int | str, extra: str = "") -> str:
    return f"""
[[notifier]]
name = "mail"
type = "email"
default = true
host = "127.0.0.1"
port = {port}
security = "none"
from = "heartbeatd <hb@example.org>"
to = "ops@example.org"
username = "{USER}"
password_file = "smtp-password"
{extra}
"""


async def test_a_check_going_down_is_mailed(start_daemon, smtp_server, tmp_path) -> None:
    server = smtp_server(auth_required=False)
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
    daemon: Daemon = await start_daemon(email_config(server.port))
    check = await daemon.add("db-dump", period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}", data=b"dumped 0 tables")
    await daemon.advance(7)
    await eventually(lambda: server.mailbox.received)
    [mail] = server.mailbox.received
    assert mail.rcpt_tos == ["ops@example.org"] and mail.login == USER.encode()
    assert mail.message["Subject"] == "db-dump is DOWN (missed ping)"
    assert "dumped 0 tables" in mail.message.get_content()
    assert unique_key(check.uuid)[:32] in mail.message["Message-ID"]
    assert check.uuid not in mail.message.as_string()
    await eventually(lambda: _all_sent(daemon))


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("", r"heartbeatd.toml:7: port: expected a whole number"),
        ('pasword = "x"', r"heartbeatd.toml:13: pasword: unknown option; email takes "),
    ],
)
async def test_config_mistakes_name_file_line_and_key(start_daemon, tmp_path, extra, where) -> None:
    (tmp_path / "smtp-password").write_text(PASSWORD)
    port = '"x"' if not extra else "2525"
    with pytest.raises(ConfigError, match=where):
        await start_daemon(email_config(port, extra))


async def test_ca_file_in_the_config_is_a_path_beside_it(
    start_daemon, smtp_server, certificate, tmp_path
) -> None:
    server = smtp_server(tls_context=server_tls(certificate), require_starttls=True)
    (tmp_path / "smtp-password").write_text(PASSWORD)
    (tmp_path / "private-ca.pem").write_bytes(certificate[0].read_bytes())
    config = email_config(server.port, 'ca_file = "private-ca.pem"').replace('"none"', '"starttls"')
    daemon: Daemon = await start_daemon(config)
    check = await daemon.add("db-dump", period=5.0, grace=1.0)
    await daemon.client.post(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: server.mailbox.received)
    assert server.mailbox.received[0].tls
    # The session ends with QUIT after the server has the mail: stopping the daemon before then
    # may leave its socket to the garbage collector, which warns in whatever test runs then.
    await eventually(lambda: _all_sent(daemon))


async def _all_sent(daemon: Daemon) -> bool:
    return await daemon.query("SELECT state FROM outbox") == [("sent",)]
