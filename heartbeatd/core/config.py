"""The configuration: embedded defaults, a TOML file, HEARTBEATD_* variables and flags.

Precedence is flag > environment > file > default. Every mistake becomes one ConfigError that
reads `FILE:LINE: key: what is wrong`, because a person fixing a config at 3 a.m. needs to know
where to look, not a traceback. It never repeats a string that may be a secret (a URL shows
only its scheme and host: redact.py), as errors are logged where more people read them.
tomllib gives no positions for values, so a small locator scans the raw text for the line of
each key in each table.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from heartbeatd.core import limits, rules
from heartbeatd.core.durations import parse_bounded_duration, parse_duration
from heartbeatd.core.model import CheckDefinition, slugify
from heartbeatd.core.redact import kind_of, shown_url
from heartbeatd.core.schedule import validate_cron, validate_tz

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Parsed = TypeVar("Parsed")
Default = TypeVar("Default")

DEFAULT_LISTEN = "127.0.0.1:8000"
DEFAULT_DB = "heartbeatd.db"
MAX_BODY_LIMIT = 10_000_000


class ConfigError(Exception):
    """A config mistake, located: `file` is a path, "environment" or "command line"."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}")


@dataclass(frozen=True)
class NotifierSpec:
    """A `[[notifier]]` table; `options` is every key but the four the router reads."""

    name: str
    type: str
    default: bool = False
    tags: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    events: tuple[str, ...] = ("down", "up")  # which events it is told of
    repeat: float | None = None  # remind every so often while a check stays down
    retry_for: float = 86400.0  # keep retrying a failed delivery this long
    file: str = "default"
    lines: Mapping[str, int] = field(default_factory=dict)


IMPLICIT_LOG = NotifierSpec(name="log", type="log", default=True)


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    db: str = DEFAULT_DB
    site_url: str = ""
    ping_body_limit: int = 100_000
    ping_retention: int = 100
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
    source: str | None = None
    ui_public: bool | None = None  # [ui] public; None: local visitors only (exposure.py)
    ui_trusted_header: str = ""  # [ui] trusted_header: a proxy's sign-in, e.g. Remote-User
    ui_trusted_header_role: str = "viewer"  # the role of a header's name that is no user here

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    def notifier_error(self, spec: NotifierSpec, key: str, message: str) -> ConfigError:
        """Locate a notifier option's mistake found later, by the notifier kind itself."""
        return ConfigError(spec.file, spec.lines.get(key, spec.lines.get("")), key, message)


# -- server settings ----------------------------------------------------------------------


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT like '127.0.0.1:8000', got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _listen(value: object) -> str:
    text = _text(value)
    split_listen(text)
    return text


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {kind_of(value)}")
    return value


def _bounded_int(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    return parse


def _site_url(value: object) -> str:
    return _web_url(value).rstrip("/")


def _networks(value: object) -> tuple[Network, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of addresses or networks, got {value!r}")
    try:
        return tuple(ipaddress.ip_network(_text(item).strip(), strict=False) for item in items)
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
    text = _text(value)
    if len(text) < 16:
        raise ValueError("expected at least 16 characters, e.g. from `openssl rand -hex 16`")
    return text


def _web_url(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", text):
        raise ValueError(f"expected an http:// or https:// URL, got {shown_url(text)}")
    return text


def _self_ping_interval(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '1m', got {value!r}")
    return parse_bounded_duration(value, 10.0, 86400.0)


def _retention(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '90d', got {value!r}")
    return parse_bounded_duration(value, 86400.0, 3650 * 86400.0)


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '5m', got {value!r}")
    return parse_duration(value)


SETTINGS: dict[str, Callable[[object], Any]] = {
    "listen": _listen,
    "db": _text,
    "site_url": _site_url,
    "ping_body_limit": _bounded_int(0, MAX_BODY_LIMIT),
    "ping_retention": _bounded_int(1, 100_000),
    "trusted_proxies": _networks,
    "startup_grace": _duration,
    "enable_shell": _flag,
    "metrics_key": _secret,
    "metrics_public": _flag,
    "self_ping_url": _web_url,
    "self_ping_interval": _self_ping_interval,
    "audit_retention": _retention,
    "history_retention": _retention,
}
TABLES = ("check", "notifier", "ui")
UI_KEYS = ("public", "trusted_header", "trusted_header_role")
ROLES = ("admin", "viewer")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


# -- loading ------------------------------------------------------------------------------


def load_config(path: Path | None, env: Mapping[str, str], flags: Mapping[str, str]) -> Config:
    """The effective config; raises ConfigError for the first mistake found."""
    values: dict[str, Any] = {}
    checks: tuple[CheckDefinition, ...] = ()
    notifiers: tuple[NotifierSpec, ...] = ()
    lines: Lines | None = None
    if path is not None:
        document, lines = _read(path)
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
        notifiers = tuple(_notifiers(document.get("notifier", []), path, lines, env))
        _refuse_shell_unless_enabled(notifiers, values.get("enable_shell", False))
        checks = tuple(_checks(document.get("check", []), path, lines, notifiers))
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
        "public": _strict_flag,
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


def _strict_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _header_name(value: object) -> str:
    text = _text(value)
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


def _refuse_shell_unless_enabled(notifiers: tuple[NotifierSpec, ...], enabled: bool) -> None:
    """Shell notifiers run commands as the daemon's user: an explicit opt-in, as Healthchecks'
    SHELL_ENABLED, so a config written by a less trusted hand cannot start one by accident."""
    for spec in notifiers:
        if spec.type == "shell" and not enabled:
            line = spec.lines.get("type", spec.lines.get(""))
            raise ConfigError(spec.file, line, "type", "shell notifiers need enable_shell = true")


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


def _read(path: Path) -> tuple[dict[str, Any], Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), None, "file", f"cannot read: {e}") from None
    if not text.strip():
        # What a reload reads while an editor or a deploy is rewriting the file in place; taken
        # as "no checks", it would delete every check and, once the file is back, give each a
        # new UUID that no crontab knows.
        raise ConfigError(
            str(path), None, "file", "is empty (a comment in it is enough to run on the defaults)"
        )
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = int(match[1]) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e)) or "invalid TOML"
        raise ConfigError(str(path), line, "syntax", message) from None
    return document, Lines(text)


class Lines:
    """Where each key of each table sits in the raw TOML text.

    Tables are named (array name, index): (None, 0) is the top level, ("check", 2) the third
    [[check]]. The empty key "" maps to the table's header line.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*(?:\.|=)")

    def __init__(self, text: str) -> None:
        self._at: dict[tuple[str | None, int], dict[str, int]] = {(None, 0): {}}
        counts: dict[str, int] = {}
        table: tuple[str | None, int] = (None, 0)
        in_multiline = False
        for number, raw in enumerate(text.splitlines(), start=1):
            quotes = raw.count('"""') + raw.count("'''")
            if in_multiline:
                in_multiline = quotes % 2 == 0
                continue
            header = self._HEADER.match(raw)
            if header:
                name = header[2].strip('"')
                index = counts.get(name, -1) + 1 if header[1] == "[[" else 0
                if header[1] == "[" and "." in name:  # [check.assert]: of the latest [[check]]
                    index = counts.get(name.partition(".")[0], 0)
                counts[name] = index
                table = (name, index)
                self._at.setdefault(table, {})[""] = number
            elif key := self._KEY.match(raw):
                self._at.setdefault(table, {}).setdefault(key[1].strip('"'), number)
            in_multiline = quotes % 2 == 1

    def table(self, name: str | None, index: int) -> dict[str, int]:
        return self._at.get((name, index), {})

    def line(self, name: str | None, key: str, index: int = 0) -> int | None:
        where = self.table(name, index)
        return where.get(key, where.get(""))


def _tables(value: object, path: Path, lines: Lines, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        line = lines.line(None, name) or lines.line(name, "")
        raise ConfigError(str(path), line, name, f"write tables as [[{name}]]")
    return value


PATH_OPTIONS = frozenset({"ca_file"})  # `_file` options that name a file, not hold a secret


def _resolve_secrets(
    options: dict[str, object], directory: Path, env: Mapping[str, str]
) -> dict[str, object]:
    """`password_file = "/run/secrets/smtp"` or `token_env = "NTFY_TOKEN"` becomes `password`
    or `token`, read from the file (relative to the config's directory) or the environment,
    so secrets need not sit in a config file that is often world-readable or in git."""
    resolved = dict(options)
    for key, value in options.items():
        if key in PATH_OPTIONS and isinstance(value, str):
            resolved[key] = str(directory / value)  # the notifier opens it; not a secret
            continue
        base, _, source = key.rpartition("_")
        if source not in ("file", "env") or not base:
            continue
        if not isinstance(value, str):
            raise _KeyError(key, f"expected a string, got {kind_of(value)}")
        if base in resolved:
            raise _KeyError(key, f"give {base} or {key}, not both")
        if source == "file":
            try:
                secret = (directory / value).read_text(encoding="utf-8").rstrip("\n")
            except (OSError, UnicodeDecodeError) as e:
                raise _KeyError(key, f"cannot read {value}: {e}") from None
        elif value in env:
            secret = env[value]
        else:
            raise _KeyError(key, f"environment variable {value} is not set")
        del resolved[key]
        resolved[base] = secret
    return resolved


def _notifiers(
    value: object, path: Path, lines: Lines, env: Mapping[str, str]
) -> list[NotifierSpec]:
    specs: list[NotifierSpec] = []
    for index, table in enumerate(_tables(value, path, lines, "notifier")):
        at = lines.table("notifier", index)

        def fail(key: str, message: str, at: dict[str, int] = at) -> ConfigError:
            return ConfigError(str(path), at.get(key, at.get("")), key, message)

        name = table.get("name")
        if not isinstance(name, str):
            raise fail("name", "required: letters a-z, digits, '-' or '_'")
        try:
            _slug(name)
        except ValueError as e:
            raise fail("name", str(e)) from None
        if any(spec.name == name for spec in specs):
            raise fail("name", f"another notifier is already named {name!r}")
        kind = table.get("type")
        if not isinstance(kind, str):
            raise fail("type", "required: the kind of notifier, e.g. 'webhook'")
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise fail("default", f"expected true or false, got {default!r}")
        try:
            tags = _tags(table.get("tags", []))
        except ValueError as e:
            raise fail("tags", str(e)) from None
        try:
            events = _events(table.get("events", ["down", "up"]))
        except ValueError as e:
            raise fail("events", str(e)) from None
        timing = {}
        for key, low in (("repeat", 60.0), ("retry_for", 0.0)):
            if key in table:
                try:
                    timing[key] = parse_bounded_duration(table[key], low, 30 * 86400.0)
                except ValueError as e:
                    raise fail(key, str(e)) from None
        if "repeat" in timing and "repeat" not in events:
            events = (*events, "repeat")
        options = {k: v for k, v in table.items() if k not in NOTIFIER_KEYS}
        try:
            options = _resolve_secrets(options, path.parent, env)
        except _KeyError as e:
            raise fail(e.key, e.message) from None
        specs.append(
            NotifierSpec(name, kind, default, tags, options, events=events, file=str(path),
                         lines=at, **timing)
        )  # fmt: skip
    return specs


NOTIFIER_KEYS = ("name", "type", "default", "tags", "events", "repeat", "retry_for")
EVENTS = ("down", "up", "late", "repeat")


def _events(value: object) -> tuple[str, ...]:
    names = _tag_list(value)
    for name in names:
        if name not in EVENTS:
            raise ValueError(f"unknown event {name!r}; events are {', '.join(EVENTS)}")
    return names


CHECK_KEYS = tuple(f.name for f in fields(CheckDefinition) if f.name != "rules") + rules.KEYS


def _checks(
    value: object, path: Path, lines: Lines, notifiers: tuple[NotifierSpec, ...]
) -> list[CheckDefinition]:
    known_notifiers = {spec.name for spec in notifiers} | ({"log"} if not notifiers else set())
    checks: list[CheckDefinition] = []
    for index, table in enumerate(_tables(value, path, lines, "check")):
        at = lines.table("check", index)
        try:
            check = _check(table, known_notifiers)
        except _KeyError as e:
            line = _check_key_line(lines, index, e.key)
            raise ConfigError(str(path), line, e.key, e.message) from None
        if any(other.slug == check.slug for other in checks):
            line = at.get("slug", at.get(""))
            raise ConfigError(str(path), line, "slug", f"another check has slug {check.slug!r}")
        checks.append(check)
    return checks


class _KeyError(Exception):
    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message


def _check(table: dict[str, Any], known_notifiers: set[str]) -> CheckDefinition:
    """One [[check]] table as a CheckDefinition; _KeyError names the offending key."""

    def get(key: str, parse: Callable[[Any], Parsed], default: Default) -> Parsed | Default:
        if key not in table:
            return default
        try:
            return parse(table[key])
        except ValueError as e:
            raise _KeyError(key, str(e)) from None

    for key in table:
        if key not in CHECK_KEYS:
            raise _KeyError(key, f"unknown key; a check takes {', '.join(CHECK_KEYS)}")
    name = get("name", _bounded_text(limits.MAX_NAME), None)
    if not name:
        raise _KeyError("name", "required: what the job is called")
    slug = get("slug", _slug, slugify(name))
    period = get("period", parse_bounded_duration, None)
    cron = get("cron", _cron, None)
    if (period is None) == (cron is None):
        raise _KeyError("period", "give either period (e.g. '1h') or cron (e.g. '0 3 * * *')")
    notifiers = get("notifiers", _tag_list, None)
    for notifier in notifiers or ():
        if notifier not in known_notifiers:
            raise _KeyError("notifiers", f"no [[notifier]] named {notifier!r}")
    return CheckDefinition(
        name=name,
        slug=slug,
        period=period,
        cron=cron,
        tz=get("tz", _tz, "UTC"),
        grace=get("grace", parse_bounded_duration, 3600.0),
        tags=get("tags", _tags, ()),
        desc=get("desc", _bounded_text(limits.MAX_DESC), ""),
        notifiers=notifiers,
        misses=get("misses", _bounded_int(1, 1000), 1),
        max_runtime=get("max_runtime", parse_bounded_duration, None),
        manual_resume=get("manual_resume", _bool, False),
        methods=get("methods", _methods, ""),
        rules=_rules(table),
    )


def _rules(table: dict[str, Any]) -> rules.CheckRules:
    try:
        return rules.from_config(table)
    except rules.RuleError as e:
        raise _KeyError(e.key, str(e)) from None


def _check_key_line(lines: Lines, index: int, key: str) -> int | None:
    """The line of a [[check]] key, or of `assert.bytes` in its [check.assert] table."""
    at = lines.table("check", index)
    table, _, sub = key.partition(".")
    inner = lines.table(f"check.{table}", index) if sub else {}
    return inner.get(sub) or at.get(table) or inner.get("") or at.get("")


def _bounded_text(limit: int) -> Callable[[object], str]:
    return lambda value: limits.bounded(_text(value), limit)


def _slug(value: object) -> str:
    """A check's slug or a notifier's name: in the file, each names one thing, so never empty."""
    text = _text(value)
    if not text:
        raise ValueError("must not be empty")
    return limits.slug(text)


def _cron(value: object) -> str:
    text = _text(value)
    validate_cron(text)
    return text


def _tz(value: object) -> str:
    text = _text(value)
    validate_tz(text)
    return text


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _methods(value: object) -> str:
    if value not in ("", "POST"):
        raise ValueError(f"expected '' (any method) or 'POST', got {value!r}")
    return str(value)


def _tags(value: object) -> tuple[str, ...]:
    return limits.tags(_tag_list(value))


def _tag_list(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"expected a list of names, got {value!r}")
    return tuple(items)
