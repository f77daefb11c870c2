"""`[[notifier]]` tables: each becomes a NotifierSpec; the notifier kind checks its own options
later. Secrets may come from files or the environment rather than the config file itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from heartbeatd.core.config.document import ConfigError, KeyProblem, Lines, tables
from heartbeatd.core.config.values import name_list, slug_value, tags_value
from heartbeatd.core.durations import parse_bounded_duration
from heartbeatd.core.redact import kind_of


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
            raise KeyProblem(key, f"expected a string, got {kind_of(value)}")
        if base in resolved:
            raise KeyProblem(key, f"give {base} or {key}, not both")
        if source == "file":
            try:
                secret = (directory / value).read_text(encoding="utf-8").rstrip("\n")
            except (OSError, UnicodeDecodeError) as e:
                raise KeyProblem(key, f"cannot read {value}: {e}") from None
        elif value in env:
            secret = env[value]
        else:
            raise KeyProblem(key, f"environment variable {value} is not set")
        del resolved[key]
        resolved[base] = secret
    return resolved


def read_notifiers(
    value: object, path: Path, lines: Lines, env: Mapping[str, str]
) -> list[NotifierSpec]:
    specs: list[NotifierSpec] = []
    for index, table in enumerate(tables(value, path, lines, "notifier")):
        at = lines.table("notifier", index)

        def fail(key: str, message: str, at: dict[str, int] = at) -> ConfigError:
            return ConfigError(str(path), at.get(key, at.get("")), key, message)

        name = table.get("name")
        if not isinstance(name, str):
            raise fail("name", "required: letters a-z, digits, '-' or '_'")
        try:
            slug_value(name)
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
            tags = tags_value(table.get("tags", []))
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
        except KeyProblem as e:
            raise fail(e.key, e.message) from None
        specs.append(
            NotifierSpec(name, kind, default, tags, options, events=events, file=str(path),
                         lines=at, **timing)
        )  # fmt: skip
    return specs


NOTIFIER_KEYS = ("name", "type", "default", "tags", "events", "repeat", "retry_for")


EVENTS = ("down", "up", "late", "repeat")


def _events(value: object) -> tuple[str, ...]:
    names = name_list(value)
    for name in names:
        if name not in EVENTS:
            raise ValueError(f"unknown event {name!r}; events are {', '.join(EVENTS)}")
    return names


def refuse_shell_unless_enabled(notifiers: tuple[NotifierSpec, ...], enabled: bool) -> None:
    """Shell notifiers run commands as the daemon's user: an explicit opt-in, as Healthchecks'
    SHELL_ENABLED, so a config written by a less trusted hand cannot start one by accident."""
    for spec in notifiers:
        if spec.type == "shell" and not enabled:
            line = spec.lines.get("type", spec.lines.get(""))
            raise ConfigError(spec.file, line, "type", "shell notifiers need enable_shell = true")
