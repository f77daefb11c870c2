"""Login throttling: after FREE_FAILURES failed logins, each next try waits twice as long.

Failures are counted twice: by source (the address ratelimit.source_of believes, an IPv6 one
cut to its /64) and by the user name typed. Past FREE_FAILURES, a key must wait FIRST_WAIT
after its last failure, doubling with each further failure; a try that comes sooner is
answered 429 with Retry-After before any password is hashed, so guessing costs the guesser
time and us nothing. Every try counts as a failure from the moment it starts (a success takes
it back): a source sending a hundred tries at once gets FREE_FAILURES of them checked, not a
hundred.

The source's wait grows to SOURCE_MAX_WAIT (15 minutes: ~100 guesses a day from an address).
The name's wait stops at NAME_MAX_WAIT (5 minutes), because anyone can fail logins for a name
from anywhere: it stops an attacker with many addresses from guessing one user's password more
than ~300 times a day, but must not let them lock the user out. So a source where the user
has logged in (within TRUST_FOR, remembered in memory) is never held back by their name's
count, only by its own: the real admin at their usual address gets in during such an attack,
and from a new address waits at most a few minutes. A success clears its source's count.
Names are counted whether or not they are users, so a 429 does not tell them apart either.

Memory is bounded: at most MAX_KEYS counts and MAX_TRUSTED trusted (name, source) pairs are
kept; when full, counts that hold nobody back go first, then the half idle longest. A count
with no failure for FORGET_AFTER starts again from zero. Time is the clock's monotonic one.
"""

from __future__ import annotations

from aiohttp import web

FREE_FAILURES = 5
FIRST_WAIT = 1.0
SOURCE_MAX_WAIT = 900.0
NAME_MAX_WAIT = 300.0
FORGET_AFTER = 86400.0
TRUST_FOR = 30 * 86400.0
MAX_KEYS = 10_000
MAX_TRUSTED = 1000


class LoginThrottle:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (count, last)
        self._trusted: dict[tuple[str, str], float] = {}  # (name, source) -> last login

    def wait(self, source: str, name: str | None, now: float) -> float:
        """Seconds before `source` may try `name` (None: the name is not known yet)."""
        wait = self._wait(("source", source), SOURCE_MAX_WAIT, now)
        if name is not None and not self._trusts(name, source, now):
            wait = max(wait, self._wait(("name", name), NAME_MAX_WAIT, now))
        return wait

    def attempt(self, source: str, name: str, now: float) -> None:
        """Count a try as failed until `succeeded` says otherwise."""
        for key in (("source", source), ("name", name)):
            if key not in self._failures and len(self._failures) >= self.max_keys:
                self._forget_idle(now)
            self._failures[key] = (self._count(key, now) + 1, now)

    def succeeded(self, source: str, name: str, now: float) -> None:
        """Clear the source's count, take back the try's count on the name, and trust the
        source for this name from now on."""
        self._failures.pop(("source", source), None)
        count, last = self._failures.get(("name", name), (0, now))
        if count > 1:
            self._failures["name", name] = (count - 1, last)
        else:
            self._failures.pop(("name", name), None)
        if (name, source) not in self._trusted and len(self._trusted) >= MAX_TRUSTED:
            oldest = min(self._trusted, key=self._trusted.__getitem__)
            del self._trusted[oldest]
        self._trusted[name, source] = now

    def _trusts(self, name: str, source: str, now: float) -> bool:
        since = self._trusted.get((name, source))
        return since is not None and now - since < TRUST_FOR

    def _count(self, key: tuple[str, str], now: float) -> int:
        count, last = self._failures.get(key, (0, now))
        return 0 if now - last >= FORGET_AFTER else count

    def _wait(self, key: tuple[str, str], longest: float, now: float) -> float:
        count, last = self._failures.get(key, (0, now))
        if count < FREE_FAILURES or now - last >= FORGET_AFTER:
            return 0.0
        backoff = min(FIRST_WAIT * 2.0 ** min(count - FREE_FAILURES, 32), longest)
        return max(0.0, last + backoff - now)

    def _forget_idle(self, now: float) -> None:
        """Drop counts that hold nobody back; if every key still does, the half idle longest."""
        self._failures = {
            key: (count, last)
            for key, (count, last) in self._failures.items()
            if count >= FREE_FAILURES and now - last < FORGET_AFTER
        }
        if len(self._failures) >= self.max_keys:
            by_age = sorted(self._failures.items(), key=lambda item: item[1][1])
            self._failures = dict(by_age[len(by_age) // 2 :])


LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
