"""Logins for the web UI: scrypt password hashes, session cookies, CSRF tokens, roles, and the
sign-in header of a proxy in front (Authelia, Authentik, oauth2-proxy, Tailscale serve).

Only hashes are stored: a password's scrypt (its parameters kept in the string, so they can be
raised later without invalidating old hashes) and the sha256 of a session's cookie token, so a
copy of the database cannot be used to log in. A user is an admin, who changes things, or a
viewer, who reads statuses but never sees a ping URL (exposure.py says who reads what).

The cost is OWASP's for scrypt: N=2^17, r=8, p=1, 128 MiB and ~0.4-0.7 s of one core per hash.
An older, cheaper hash still verifies and is replaced at the current cost on its owner's next
login. Because each hash costs that much, `Passwords` runs them in a thread, HASHES_AT_ONCE at
a time, and refuses new ones while MAX_WAITING wait: a flood of logins then uses one core and
128 MiB, and the event loop (pings) keeps the other core. A name that is no user is checked
against a dummy hash of the current cost, so the answer takes as long as for a real user and
does not tell names apart (a user whose hash predates the current cost answers faster until
their next login upgrades it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from heartbeatd.core import limits
from heartbeatd.core.errors import Forbidden, TooManyRequests
from heartbeatd.web.exposure import anyone_may_read, is_local
from heartbeatd.web.keys import CLOCK, CONFIG, STORE

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1  # OWASP's: 128 MiB and ~0.5 s of CPU per guess
SCRYPT_MAXMEM = 256 * 1024 * 1024  # N=2^17 needs 128 MiB and a little more
HASHES_AT_ONCE = 1  # one core hashes; the event loop keeps the other
MAX_WAITING = 8  # logins queued for a hash before more are refused at once
SESSION_COOKIE = "heartbeatd_session"
LOGIN_COOKIE = "heartbeatd_login"  # the login form's CSRF token, before there is a session
SESSION_LIFETIME = 30 * 86400.0
FORM_EXPIRED = "the form has expired or did not come from this site; reload and retry"
DEFAULT_USER = "admin"
ADMIN, VIEWER = "admin", "viewer"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    csrf: str
    role: str = ADMIN
    by_header: bool = False  # signed in by the proxy's header: there is no session to end

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """A salted scrypt hash at the current cost; `n` lower only for tests, to keep them fast."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; False for a malformed hash, never an exception."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32
    )


def dummy_hash(n: int) -> str:
    """A hash of cost `n` that no password matches (its digest is random): what an unknown
    name is checked against, so that it costs the same time as a real user's."""
    salt, digest = secrets.token_bytes(16), secrets.token_bytes(32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def is_outdated(stored: str, n: int) -> bool:
    """Whether a stored hash is cheaper than the cost `n` (or unreadable): rehash it."""
    try:
        scheme, hash_n, r, p, _, _ = stored.split("$")
        return scheme != "scrypt" or (int(hash_n), int(r), int(p)) < (n, SCRYPT_R, SCRYPT_P)
    except ValueError:
        return True


class Passwords:
    """Checks and hashes passwords in threads, `at_once` at a time (see the module docstring).

    `n` is the cost new hashes get and unknown names are checked at; tests pass a low one.
    """

    def __init__(self, n: int = SCRYPT_N, at_once: int = HASHES_AT_ONCE) -> None:
        self.n = n
        self._slots = asyncio.Semaphore(at_once)
        self._dummy = dummy_hash(n)
        self._waiting = 0

    def busy(self) -> bool:
        return self._waiting >= MAX_WAITING

    async def matches(self, password: str, stored: str | None) -> bool:
        """Whether `password` matches `stored`; None (no such user) checks the dummy hash."""
        return await self._run(verify_password, password, stored or self._dummy)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password, self.n)

    async def _run(self, work: Callable[[str, Any], T], password: str, arg: Any) -> T:
        if self.busy():
            raise TooManyRequests("too many logins at once; try again in a moment")
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work, password, arg)
        finally:
            self._waiting -= 1


PASSWORDS = web.AppKey("passwords", Passwords)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()  # bad bytes: no match


def from_trusted_proxy(request: web.Request) -> bool:
    """Whether the peer is one of `trusted_proxies`, whose forwarding headers are believed."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(peer in network for network in request.app[CONFIG].trusted_proxies)


def came_over_https(request: web.Request) -> bool:
    """Directly, or through a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return forwarded and from_trusted_proxy(request)


async def current_user(request: web.Request) -> User | None:
    """Who is signed in: by the proxy's header, or by a session cookie."""
    by_header = await header_user(request)
    if by_header is not None:
        return by_header
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    app = request.app
    found = await app[STORE].session(token_hash(token), app[CLOCK].now())
    return User(*found) if found else None


async def header_user(request: web.Request) -> User | None:
    """The user `[ui] trusted_header` names, believed only from a trusted proxy: anyone else
    could send the header too. A name that is no user here gets `trusted_header_role`.

    There is no session, so the CSRF token is derived from the name under an instance secret:
    the same on every page, unknowable to another site."""
    config = request.app[CONFIG]
    if not config.ui_trusted_header or not from_trusted_proxy(request):
        return None
    name = request.headers.get(config.ui_trusted_header, "").strip()
    if not name or len(name) > limits.MAX_USER_NAME:  # no user of ours
        return None
    store = request.app[STORE]
    role = await store.role_of(name) or config.ui_trusted_header_role
    secret = await store.instance_secret("csrf_key")
    message = f"csrf\0{name}".encode("utf-8", "surrogatepass")
    csrf = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return User(name, csrf, role, by_header=True)


async def reader(request: web.Request) -> User | None:
    """The signed-in user, or None for a visitor the status page is open to (a public page, a
    local visitor); anyone else is sent to the login page."""
    user = await current_user(request)
    if user is None and not anyone_may_read(request):
        raise to_login(request)
    return user


def sees_secrets(request: web.Request, user: User | None) -> bool:
    """Whether ping URLs and badge links are shown: to an admin and to a local visitor, never
    to a viewer or the visitor of a public page (a ping URL lets its holder silence a check)."""
    return user.admin if user is not None else is_local(request)


async def require_admin(request: web.Request) -> User:
    """The admin making a change; the login page for anyone not signed in, 403 for a viewer."""
    user = await current_user(request)
    if user is None:
        raise to_login(request)
    if not user.admin:
        raise Forbidden(f"{user.name} is a viewer: only an admin can change checks")
    return user


def to_login(request: web.Request) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else "/"
    return web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")


def check_csrf(expected: str, given: object) -> None:
    """Refuse a form whose token is not the session's (compared in constant time). No token
    to expect (no login cookie) refuses every form: an empty field must not match it."""
    if (
        not expected
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())
    ):
        raise Forbidden(FORM_EXPIRED)


async def start_session(request: web.Request, response: web.StreamResponse, user_id: int) -> None:
    token = secrets.token_urlsafe(32)
    now = request.app[CLOCK].now()
    csrf = secrets.token_urlsafe(32)
    await request.app[STORE].add_session(
        token_hash(token), user_id, csrf, now, now + SESSION_LIFETIME
    )
    set_cookie(request, response, SESSION_COOKIE, token, int(SESSION_LIFETIME))


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Log out: the session's row and cookie go (a header sign-in ends at the proxy)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await request.app[STORE].end_session(token_hash(token))
    response.del_cookie(SESSION_COOKIE, path="/")


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=came_over_https(request),
    )
