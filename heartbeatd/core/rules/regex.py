"""The one place a regular expression written by a user is compiled: RE2, in linear time.

Python's `re` backtracks, so one pattern set through the API (`failure_re = "^(a+)+$"`) and a
25-byte body held the event loop 1.6 s, doubling with each byte. RE2 takes time linear in the
body whatever the pattern; what it pays for that is the features that need backtracking
(backreferences, lookahead and lookbehind), which it refuses when the pattern is compiled.

Linear still has a factor, the pattern's compiled size: where RE2's fast automaton gives up
(`[ab]*a[ab]{20}c`), a byte costs up to ~6 ns per step of the program (measured: 0.29 s for a
100 kB body at 455 steps). So the program is bounded, and searches run in a thread of their own
(store.record_ping). Memory is bounded too: `max_mem` caps what one compiled pattern may hold
(RE2's default is 8 MiB; with 256 KiB a giant pattern is refused after ~2 ms of compiling, and
a costly search leaves 0.1 MiB where it left 0.38), and a rule keeps only its text: the google-re2
module keeps the 128 compiled patterns used last, so all of them hold at most 32 MiB however
many checks have patterns.

Patterns are searched for (not matched from the start) and are case-sensitive unless they
say `(?i)`, as before. `$` still also matches before a final newline, as Python's does: a
body piped from `echo` ends with one.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2

from heartbeatd.core.limits import MAX_KEYWORDS, bounded

MAX_PROGRAM = 500  # RE2 program steps: the worst measured, 0.29 s for a 100 kB body
MAX_MEM = 256 * 1024  # bytes one compiled pattern may use
SYNTAX_HINT = "heartbeatd runs RE2 syntax, which has no backreferences or lookaround"


class RegexError(ValueError):
    """A pattern heartbeatd will not run; the message says why, for the user to fix it."""


@dataclass(frozen=True, slots=True)
class UserRegex:
    """A user's pattern that compile_regex accepted, kept as text (see the module docstring).

    `refused` is set only for a pattern stored before heartbeatd used RE2 that RE2 cannot
    run (load_stored): it is kept so the user sees it and can replace it, but never run.
    """

    pattern: str
    refused: str = ""

    def search(self, text: str) -> bool:
        """Whether the pattern occurs anywhere in `text`; a refused pattern never does."""
        if self.refused:
            return False
        compiled = re2.compile(self.pattern, _OPTIONS)  # from re2's cache when used lately
        if compiled.search(text) is not None:
            return True
        ends_line = "$" in self.pattern and text.endswith("\n")  # Python's `$` (module doc)
        return ends_line and compiled.search(text[:-1]) is not None


def compile_regex(pattern: str) -> UserRegex:
    """`pattern` checked for RE2 and the bounds; RegexError says why heartbeatd refuses it.
    Its length is checked first (the keywords' bound, limits.py): a huge one is not compiled."""
    try:
        bounded(pattern, MAX_KEYWORDS)
    except ValueError as e:
        raise RegexError(str(e)) from None
    return _runnable(pattern)


def load_stored(pattern: str) -> UserRegex:
    """A pattern read back from the database: one RE2 refuses loads as refused, not an error,
    so a check saved before heartbeatd used RE2 does not stop the daemon from starting. Its
    length is not checked again: one saved before the bound still runs (limits.py)."""
    try:
        return _runnable(pattern)
    except RegexError as e:
        return UserRegex(pattern, str(e))


def _runnable(pattern: str) -> UserRegex:
    """`pattern`, if RE2 can run it within MAX_PROGRAM steps and MAX_MEM."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        raise RegexError(f"not a valid regular expression: {_reason(e)}; {SYNTAX_HINT}") from None
    if compiled.programsize > MAX_PROGRAM:
        raise RegexError(
            f"too complex: it compiles to {compiled.programsize} steps, at most {MAX_PROGRAM};"
            " make repetitions such as {100} smaller"
        )
    return UserRegex(pattern)


def _reason(error: re2.error) -> str:
    """RE2's message, which the binding gives as bytes."""
    (message,) = error.args or ("",)
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # RE2 would print each refused pattern to stderr
    return options


_OPTIONS = _options()
