"""The config file as a document: reading it, finding the line of each key, and the error
that names `FILE:LINE: key: what is wrong`.

tomllib gives no positions for values, so a small locator (Lines) scans the raw text for the
line of each key in each table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

Parsed = TypeVar("Parsed")
Default = TypeVar("Default")


class ConfigError(Exception):
    """A config mistake, located: `file` is a path, "environment" or "command line"."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}")


class KeyProblem(Exception):
    """A mistake in one key of a table, located by the caller, which knows the table."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message


class TableKeys:
    """A table's keys, read one by one: an unknown key, or a value its parser refuses, is a
    KeyProblem naming the key, which the caller locates in the file."""

    def __init__(self, table: dict[str, Any], known: Sequence[str], what: str) -> None:
        for key in table:
            if key not in known:
                raise KeyProblem(key, f"unknown key; {what} takes {', '.join(known)}")
        self.table = table

    def get(self, key: str, parse: Callable[[Any], Parsed], default: Default) -> Parsed | Default:
        if key not in self.table:
            return default
        try:
            return parse(self.table[key])
        except ValueError as e:
            raise KeyProblem(key, str(e)) from None


def read_document(path: Path) -> tuple[dict[str, Any], Lines]:
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


def tables(value: object, path: Path, lines: Lines, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        line = lines.line(None, name) or lines.line(name, "")
        raise ConfigError(str(path), line, name, f"write tables as [[{name}]]")
    return value
