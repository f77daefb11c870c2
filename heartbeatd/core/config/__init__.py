"""The configuration: embedded defaults, a TOML file, HEARTBEATD_* variables and flags.

Precedence is flag > environment > file > default. Every mistake becomes one ConfigError that
reads `FILE:LINE: key: what is wrong`, because a person fixing a config at 3 a.m. needs to know
where to look, not a traceback. It never repeats a string that may be a secret (a URL shows
only its scheme and host: redact.py), as errors are logged where more people read them.
One module per part of the file: document (reading and locating), values (single values),
notifiers and checks (their tables); this one holds the settings and puts it all together.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heartbeatd.core.config.checks import CHECK_KEYS, read_checks
from heartbeatd.core.config.document import ConfigError, Lines, read_document
from heartbeatd.core.config.notifiers import (
    IMPLICIT_LOG,
    NOTIFIER_KEYS,
    NotifierSpec,
    read_notifiers,
    refuse_shell_unless_enabled,
)  # fmt: skip
from heartbeatd.core.config.silences import SILENCE_KEYS, read_silences
from heartbeatd.core.config.values import as_text, bounded_int, strict_bool
from heartbeatd.core.durations import parse_bounded_duration, parse_duration
from heartbeatd.core.model import CheckDefinition
from heartbeatd.core.redact import shown_url
from heartbeatd.core.silence import Silence

__all__ = [
    "CHECK_KEYS", "NOTIFIER_KEYS", "SETTINGS", "SILENCE_KEYS", "Config", "ConfigError",
    "NotifierSpec", "load_config", "split_listen",
]  # fmt: skip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


DEFAULT_LISTEN = "127.0.0.1:8000"


DEFAULT_DB = "heartbeatd.db"


MAX_BODY_LIMIT = 10_000_000


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    db: str = DEFAULT_DB
    site_url: str = ""
    ping_body_limit: int = 100_000
    ping_retention: int = 100
    pushgateway_create: bool = False  # a push for a job no check has creates one (pushgateway.py)
    trusted_proxies: tuple[Network, ...] = ()
    startup_grace: float | None = None
    enable_shell: bool = False
    metrics_key: str = ""  # empty: /metrics answers local visitors only (exposure.py)
    metrics_public: bool = False  # /metrics without a key, to anyone who reaches it
    self_ping_url: str = ""  # another monitor that expects a ping from heartbeatd itself
    self_ping_interval: float = 60.0
    audit_retention: float = 90 * 86400.0  # audit rows older than this are pruned
    history_retention: float = 90 * 86400.0  # so are flips and finished notifications
    checks: tuple[CheckDefinition, ...] = ()
    notifiers: tuple[NotifierSpec, ...] = (IMPLICIT_LOG,)
    silences: tuple[Silence, ...] = ()  # [[silence]] maintenance windows (core/silence.py)
    source: str | None = None
    ui_public: bool | None = None  # [ui] public; None: local visitors only (exposure.py)
    ui_trusted_header: str = ""  # [ui] trusted_header: a proxy's sign-in, e.g. Remote-User
    ui_trusted_header_role: str = "viewer"  # the role of a header's name that is no user here
    smtp_listen: str = ""  # HOST:PORT of the listener for e-mailed pings (web/smtp.py); off
    smtp_timeout: float = 60.0  # how long an SMTP client may take over each command

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    def notifier_error(self, spec: NotifierSpec, key: str, message: str) -> ConfigError:
        """Locate a notifier option's mistake found later, by the notifier kind itself."""
        return ConfigError(spec.file, spec.lines.get(key, spec.lines.get("")), key, message)


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT like '127.0.0.1:8000', got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _listen(value: object) -> str:
    text = as_text(value)
    split_listen(text)
    return text


def _smtp_listen(value: object) -> str:
    """Where e-mailed pings are taken, or "" for nowhere; the listener needs aiosmtpd, an
    optional dependency, so a config that asks for it without it stops here, located."""
    text = as_text(value)
    if text:
        split_listen(text)
        if importlib.util.find_spec("aiosmtpd") is None:
            raise ValueError("needs aiosmtpd: pip install 'heartbeatd[email]'")
    return text


def _duration_between(low: float, high: float, example: str) -> Callable[[object], float]:
    """A duration setting's parser: written like '{example}' or as seconds, from low to high."""

    def parse(value: object) -> float:
        if not isinstance(value, str | int | float):
            raise ValueError(f"expected a duration like '{example}', got {value!r}")
        return parse_bounded_duration(value, low, high)

    return parse


_smtp_timeout = _duration_between(0.1, 3600.0, "1m")


def _site_url(value: object) -> str:
    return _web_url(value).rstrip("/")


def _networks(value: object) -> tuple[Network, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of addresses or networks, got {value!r}")
    try:
        return tuple(ipaddress.ip_network(as_text(item).strip(), strict=False) for item in items)
    except ValueError as e:
        raise ValueError(f"expected addresses or networks like '10.0.0.0/8': {e}") from None


def _flag(value: object) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _secret(value: object) -> str:
    """A key people must present: at least 16 characters, so it cannot be guessed."""
    text = as_text(value)
    if len(text) < 16:
        raise ValueError("expected at least 16 characters, e.g. from `openssl rand -hex 16`")
    return text


def _web_url(value: object) -> str:
    text = as_text(value)
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", text):
        raise ValueError(f"expected an http:// or https:// URL, got {shown_url(text)}")
    return text


_self_ping_interval = _duration_between(10.0, 86400.0, "1m")


_retention = _duration_between(86400.0, 3650 * 86400.0, "90d")


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '5m', got {value!r}")
    return parse_duration(value)


SETTINGS: dict[str, Callable[[object], Any]] = {
    "listen": _listen,
    "db": as_text,
    "site_url": _site_url,
    "ping_body_limit": bounded_int(0, MAX_BODY_LIMIT),
    "ping_retention": bounded_int(1, 100_000),
    "pushgateway_create": _flag,
    "trusted_proxies": _networks,
    "startup_grace": _duration,
    "enable_shell": _flag,
    "metrics_key": _secret,
    "metrics_public": _flag,
    "self_ping_url": _web_url,
    "self_ping_interval": _self_ping_interval,
    "audit_retention": _retention,
    "history_retention": _retention,
    "smtp_listen": _smtp_listen,
    "smtp_timeout": _smtp_timeout,
}


TABLES = ("check", "notifier", "silence", "ui")


UI_KEYS = ("public", "trusted_header", "trusted_header_role")


ROLES = ("admin", "viewer")


HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def load_config(path: Path | None, env: Mapping[str, str], flags: Mapping[str, str]) -> Config:
    """The effective config; raises ConfigError for the first mistake found."""
    values: dict[str, Any] = {}
    checks: tuple[CheckDefinition, ...] = ()
    notifiers: tuple[NotifierSpec, ...] = ()
    silences: tuple[Silence, ...] = ()
    lines: Lines | None = None
    if path is not None:
        document, lines = read_document(path)
        for key, value in document.items():
            if key in TABLES:
                continue
            if key not in SETTINGS:
                known = ", ".join([*SETTINGS, *TABLES])
                raise ConfigError(
                    str(path), lines.line(None, key), key, f"unknown key; known: {known}"
                )
            values[key] = _setting(key, value, str(path), lines.line(None, key))
        if "db" in values:  # a relative db in a file is relative to the file, not the cwd
            values["db"] = str(path.parent / values["db"])
        notifiers = tuple(read_notifiers(document.get("notifier", []), path, lines, env))
        refuse_shell_unless_enabled(notifiers, values.get("enable_shell", False))
        checks = tuple(read_checks(document.get("check", []), path, lines, notifiers))
        silences = tuple(read_silences(document.get("silence", []), path, lines))
        if "ui" in document:
            values.update(_ui(document["ui"], path, lines))
    for key in SETTINGS:
        variable = f"HEARTBEATD_{key.upper()}"
        if variable in env:
            values[key] = _setting(key, env[variable], "environment", None, variable)
    for key, value in flags.items():
        values[key] = _setting(key, value, "command line", None, f"--{key.replace('_', '-')}")
    _header_needs_proxies(values, path, lines)
    listen = values.get("listen", DEFAULT_LISTEN)
    values.setdefault("site_url", default_site_url(listen))
    return Config(
        **values,
        checks=checks,
        notifiers=notifiers or (IMPLICIT_LOG,),
        silences=silences,
        source=str(path) if path else None,
    )


def _ui(value: object, path: Path, lines: Lines) -> dict[str, Any]:
    """The [ui] table: who may see the status page without logging in, and how a proxy in
    front may sign people in."""
    if not isinstance(value, dict):
        raise ConfigError(str(path), lines.line(None, "ui"), "ui", "write it as a [ui] table")
    for key in value:
        if key not in UI_KEYS:
            line = lines.line("ui", key)
            raise ConfigError(
                str(path), line, f"ui.{key}", f"unknown key; [ui] takes {', '.join(UI_KEYS)}"
            )
    parsers: dict[str, Callable[[object], Any]] = {
        "public": strict_bool,
        "trusted_header": _header_name,
        "trusted_header_role": _role,
    }
    found: dict[str, Any] = {}
    for key, parse in parsers.items():
        if key in value:
            try:
                found[f"ui_{key}"] = parse(value[key])
            except ValueError as e:
                raise ConfigError(str(path), lines.line("ui", key), f"ui.{key}", str(e)) from None
    return found


def _header_name(value: object) -> str:
    text = as_text(value)
    if not HEADER_NAME.fullmatch(text):
        raise ValueError(f"expected an HTTP header name like 'Remote-User', got {value!r}")
    return text


def _role(value: object) -> str:
    if value not in ROLES:
        raise ValueError(f"expected one of {', '.join(ROLES)}, got {value!r}")
    return str(value)


def _header_needs_proxies(
    values: Mapping[str, Any], path: Path | None, lines: Lines | None
) -> None:
    """A sign-in header believed from anyone would let anyone claim to be the admin."""
    if values.get("ui_trusted_header") and not values.get("trusted_proxies"):
        line = lines.line("ui", "trusted_header") if lines else None
        raise ConfigError(
            str(path), line, "ui.trusted_header",
            "needs trusted_proxies: the header is believed only from the proxy that sets it",
        )  # fmt: skip


def default_site_url(listen: str) -> str:
    host, port = split_listen(listen)
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _setting(key: str, value: object, file: str, line: int | None, name: str = "") -> Any:
    try:
        return SETTINGS[key](value)
    except ValueError as e:
        raise ConfigError(file, line, name or key, str(e)) from None
