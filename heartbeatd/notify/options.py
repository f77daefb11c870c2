"""Reading a notifier's config table: typed getters that name the key when a value is wrong.

Every notifier kind reads its options through one Options object and calls done() last, so an
option it does not know (a typo like `usrname`) stops start-up instead of being ignored.
Secrets never reach a notifier as `<key>_file` or `<key>_env`: config.py has already replaced
them by `<key>`, read from the file or the environment. Errors name the key and say what is
wrong without repeating a string the key was given (redact.py): a malformed URL, token or list
of Apprise URLs is likely a secret, and config errors end up in logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from heartbeatd.core.durations import parse_duration
from heartbeatd.core.redact import kind_of, shown_url

_MISSING: Any = object()


class OptionError(Exception):
    """A notifier option is wrong; the loader turns it into FILE:LINE: key: message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class Options:
    def __init__(self, kind: str, table: Mapping[str, object]) -> None:
        self._kind = kind
        self._table = table
        self._read: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self._table:
            return self._table[key]
        if default is _MISSING:
            raise OptionError(key, f"required by the {self._kind} notifier")
        return default

    def str(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise OptionError(key, f"expected a string, got {kind_of(value)}")
        return value

    def url(self, key: str, default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        if value is default:
            return value
        if not _is_web_url(value):
            raise OptionError(key, f"expected an http:// or https:// URL, got {shown_url(value)}")
        return value.rstrip("/") if urlsplit(value).path in ("", "/") else value

    def int(self, key: str, default: Any = _MISSING, low: int = 0, high: int = 2**31) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            given = value if type(value) is int else kind_of(value)  # a port, a priority: no secret
            raise OptionError(key, f"expected a whole number from {low} to {high}, got {given}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise OptionError(key, f"expected true or false, got {kind_of(value)}")
        return value

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default or value is None:
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            raise OptionError(key, str(e)) from None

    def choice(self, key: str, choices: Sequence[str], default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and value not in choices:
            raise OptionError(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def str_list(self, key: str, default: Any = _MISSING) -> Any:
        """A list of strings; a single string is a list of one."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise OptionError(key, f"expected a list of strings, got {kind_of(value)}")
        for number, item in enumerate(value, 1):
            if not isinstance(item, str) or not item:
                what = f"item {number} is {kind_of(item)}"
                raise OptionError(key, f"expected a list of strings; {what}")
        return list(value)

    def str_dict(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, dict):
            raise OptionError(key, f"expected a table of strings, got {kind_of(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise OptionError(key, f"expected a table of strings; {name} is {kind_of(item)}")
        return dict(value)

    def done(self) -> None:
        """Refuse every option no getter asked for."""
        for key in self._table:
            if key not in self._read:
                known = ", ".join(sorted(self._read)) or "no options"
                raise OptionError(key, f"unknown option; {self._kind} takes {known}")


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # a broken [IPv6] host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
