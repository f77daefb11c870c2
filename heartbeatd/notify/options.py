"""Reading a notifier's config table: typed getters that name the key when a value is wrong.

Every notifier kind reads its options through one Options object and calls done() last, so an
option it does not know (a typo like `usrname`) stops start-up instead of being ignored.
Secrets never reach a notifier as `<key>_file` or `<key>_env`: config.py has already replaced
them by `<key>`, read from the file or the environment. Errors name the key and say what is
wrong without repeating a string the key was given (redact.py): a malformed URL, token or list
of Apprise URLs is likely a secret, and config errors end up in logs.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping, Sequence
from typing import Final, TypeVar
from urllib.parse import urlsplit

from heartbeatd.core.durations import parse_duration
from heartbeatd.core.redact import kind_of, shown_url


class _Missing(enum.Enum):
    """The default of a getter whose option is required: no value of the option's type."""

    MISSING = enum.auto()


_MISSING: Final = _Missing.MISSING
T = TypeVar("T")


class OptionError(Exception):
    """A notifier option is wrong; the loader turns it into FILE:LINE: key: message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class Options:
    """Each getter returns the option's value checked for its type, or `default` when the table
    does not have the option; without a default the option is required. (Inside this class
    `str`, `int` and `bool` name the getters, so annotations say `builtins.str`.)"""

    def __init__(self, kind: builtins.str, table: Mapping[builtins.str, object]) -> None:
        self._kind = kind
        self._table = table
        self._read: set[builtins.str] = set()

    def _given(self, key: builtins.str) -> object:
        """The value the table gives `key`, or _MISSING when it gives none."""
        self._read.add(key)
        return self._table.get(key, _MISSING)

    def _default(self, key: builtins.str, default: T | _Missing) -> T:
        """What a getter returns when the table lacks `key`: refused when `key` is required."""
        if isinstance(default, _Missing):
            raise OptionError(key, f"required by the {self._kind} notifier")
        return default

    def str(self, key: builtins.str, default: T | _Missing = _MISSING) -> builtins.str | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if not isinstance(value, builtins.str):
            raise OptionError(key, f"expected a string, got {kind_of(value)}")
        return value

    def url(self, key: builtins.str, default: T | _Missing = _MISSING) -> builtins.str | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        url = self.str(key)
        if not _is_web_url(url):
            raise OptionError(key, f"expected an http:// or https:// URL, got {shown_url(url)}")
        return url.rstrip("/") if urlsplit(url).path in ("", "/") else url

    def int(
        self,
        key: builtins.str,
        default: T | _Missing = _MISSING,
        low: builtins.int = 0,
        high: builtins.int = 2**31,
    ) -> builtins.int | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if (
            not isinstance(value, builtins.int)
            or isinstance(value, builtins.bool)
            or not low <= value <= high
        ):
            given = value if type(value) is builtins.int else kind_of(value)  # a port: no secret
            raise OptionError(key, f"expected a whole number from {low} to {high}, got {given}")
        return value

    def bool(self, key: builtins.str, default: T | _Missing = _MISSING) -> builtins.bool | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if not isinstance(value, builtins.bool):
            raise OptionError(key, f"expected true or false, got {kind_of(value)}")
        return value

    def duration(self, key: builtins.str, default: T | _Missing = _MISSING) -> float | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        try:
            return parse_duration(value)
        except ValueError as e:
            raise OptionError(key, builtins.str(e)) from None

    def choice(
        self, key: builtins.str, choices: Sequence[builtins.str], default: T | _Missing = _MISSING
    ) -> builtins.str | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if not isinstance(value, builtins.str) or value not in choices:
            raise OptionError(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def str_list(
        self, key: builtins.str, default: T | _Missing = _MISSING
    ) -> list[builtins.str] | T:
        """A list of strings; a single string is a list of one."""
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if isinstance(value, builtins.str):
            value = [value]
        if not isinstance(value, list):
            raise OptionError(key, f"expected a list of strings, got {kind_of(value)}")
        items: list[builtins.str] = []
        for number, item in enumerate(value, 1):
            if not isinstance(item, builtins.str) or not item:
                what = f"item {number} is {kind_of(item)}"
                raise OptionError(key, f"expected a list of strings; {what}")
            items.append(item)
        return items

    def str_dict(
        self, key: builtins.str, default: T | _Missing = _MISSING
    ) -> dict[builtins.str, builtins.str] | T:
        value = self._given(key)
        if value is _MISSING:
            return self._default(key, default)
        if not isinstance(value, dict):
            raise OptionError(key, f"expected a table of strings, got {kind_of(value)}")
        table: dict[builtins.str, builtins.str] = {}
        for name, item in value.items():
            if not isinstance(item, builtins.str):
                raise OptionError(key, f"expected a table of strings; {name} is {kind_of(item)}")
            table[name] = item
        return table

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
