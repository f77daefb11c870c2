"""Reading a notifier's config table: typed getters that name the key when a value is wrong.

Every notifier kind reads its options through one Options object and calls done() last, so an
option it does not know (a typo like `usrname`) stops start-up instead of being ignored.
Secrets never reach a notifier as `<key>_file` or `<key>_env`: config.py has already replaced
them by `<key>`, read from the file or the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from heartbeatd.durations import parse_duration

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
            raise OptionError(key, f"expected a string, got {value!r}")
        return value

    def url(self, key: str, default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        if value is default:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise OptionError(key, f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if parts.path in ("", "/") else value

    def int(self, key: str, default: Any = _MISSING, low: int = 0, high: int = 2**31) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise OptionError(key, f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise OptionError(key, f"expected true or false, got {value!r}")
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
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise OptionError(key, f"expected a list of strings, got {value!r}")
        return list(value)

    def str_dict(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise OptionError(key, f"expected a table of strings, got {value!r}")
        return dict(value)

    def done(self) -> None:
        """Refuse every option no getter asked for."""
        for key in self._table:
            if key not in self._read:
                known = ", ".join(sorted(self._read)) or "no options"
                raise OptionError(key, f"unknown option; {self._kind} takes {known}")
