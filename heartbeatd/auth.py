"""Logins for the web UI: scrypt password hashes, session cookies and CSRF tokens.

Only hashes are stored: a password's scrypt (its parameters kept in the string, so they can be
raised later without invalidating old hashes) and the sha256 of a session's cookie token, so a
copy of the database cannot be used to log in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from heartbeatd.config import Config
from heartbeatd.errors import HeartbeatdError
from heartbeatd.web_keys import CLOCK, CONFIG, STORE

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~50 ms and 16 MiB per guess
SESSION_COOKIE = "heartbeatd_session"
LOGIN_COOKIE = "heartbeatd_login"  # the login form's CSRF token, before there is a session
SESSION_LIFETIME = 30 * 86400.0
DEFAULT_USER = "admin"


class Forbidden(HeartbeatdError):
    status = 403
    text = "forbidden"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    csrf: str


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


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
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()  # bad bytes: no match


def is_public(config: Config) -> bool:
    """`[ui] public`, or by default: public only when nobody off this machine can connect."""
    if config.ui_public is not None:
        return config.ui_public
    host = config.host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def came_over_https(request: web.Request) -> bool:
    """Directly, or through a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.secure:
        return True
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    trusted = any(peer in network for network in request.app[CONFIG].trusted_proxies)
    return trusted and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def current_user(request: web.Request) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    app = request.app
    found = await app[STORE].session(token_hash(token), app[CLOCK].now())
    return User(*found) if found else None


async def viewer(request: web.Request) -> User | None:
    """The logged-in user, or None on a public instance; otherwise off to the login page."""
    user = await current_user(request)
    if user is None and not is_public(request.app[CONFIG]):
        raise to_login(request)
    return user


async def require_user(request: web.Request) -> User:
    """The logged-in user making a change; the login page for anyone else."""
    user = await current_user(request)
    if user is None:
        raise to_login(request)
    return user


def to_login(request: web.Request) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else "/"
    return web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")


def check_csrf(expected: str, given: object) -> None:
    """Refuse a form whose token is not the session's (compared in constant time)."""
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")


async def password_matches(stored: str, password: str) -> bool:
    """verify_password off the event loop: scrypt takes tens of milliseconds by design."""
    return await asyncio.to_thread(verify_password, password, stored)


async def start_session(request: web.Request, response: web.StreamResponse, user_id: int) -> None:
    token = secrets.token_urlsafe(32)
    now = request.app[CLOCK].now()
    csrf = secrets.token_urlsafe(32)
    await request.app[STORE].add_session(
        token_hash(token), user_id, csrf, now, now + SESSION_LIFETIME
    )
    set_cookie(request, response, SESSION_COOKIE, token, int(SESSION_LIFETIME))


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
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
