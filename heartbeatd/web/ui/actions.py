"""What a logged-in person can do in the web UI: log in and out, create, edit, pause, resume,
delete and rotate checks, and send a test notification.

Every form carries the session's CSRF token and every change is written to the audit log with
the user's name. Checks declared in the config file are the file's to change: the UI refuses
to edit, rotate or delete them (pausing is state, not definition, and is allowed).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiMapping

from heartbeatd.core import fields, limits, model
from heartbeatd.core.durations import format_duration
from heartbeatd.core.errors import BadRequest, Forbidden, plain_errors
from heartbeatd.core.model import Check, CheckDefinition
from heartbeatd.notify import Event, Notifier, NotifyError, build_notifiers
from heartbeatd.web.bodies import paced
from heartbeatd.web.keys import CHECKS, CLOCK, CONFIG, STORE
from heartbeatd.web.login_limit import LOGIN_THROTTLE
from heartbeatd.web.ratelimit import MISS_LIMITER, source_of
from heartbeatd.web.ui import auth
from heartbeatd.web.ui.auth import PASSWORDS, User, check_csrf, require_admin
from heartbeatd.web.ui.pages import UUID_PATH, check_page_response, render

routes = web.RouteTableDef()
T = TypeVar("T")
MAX_LOGIN_FORM = 8192  # bytes: a login form is far smaller; a 1 MB user name is refused early


# -- login --------------------------------------------------------------------------------


async def posted(request: web.Request, max_size: int | None = None) -> MultiMapping[object]:
    """The submitted form, refused with 413 past `max_size` bytes (default: aiohttp's 1 MiB),
    read at the pace every body is (bodies.py); callers check who is asking first where they
    can (the session, the login cookie). aiohttp decodes a field strictly, so bytes that are
    not UTF-8 made a 500; they are the client's mistake: 400."""
    if max_size is not None:
        request = request.clone(client_max_size=max_size)
    try:
        async with paced(request):
            return await request.post()
    except UnicodeDecodeError:
        raise BadRequest("the form is not valid UTF-8") from None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"  # browsers take a backslash for a slash: /\host is //host
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def login_page(request: web.Request, status: int = 200, error: str = "", name: str = "",
               users: int = 1) -> web.Response:  # fmt: skip
    csrf = secrets.token_urlsafe(32)
    response = render(
        request, "login.html", http_status=status, csrf=csrf, error=error,
        name=name or auth.DEFAULT_USER, next=safe_next(request.query.get("next")), users=users,
        max_user_name=limits.MAX_USER_NAME, max_password=limits.MAX_PASSWORD,
    )  # fmt: skip
    auth.set_cookie(request, response, auth.LOGIN_COOKIE, csrf, 3600)
    return response


@routes.get("/login")
@plain_errors
async def login_form(request: web.Request) -> web.Response:
    return login_page(request, users=await request.app[STORE].user_count())


@routes.post("/login")
@plain_errors
async def login(request: web.Request) -> web.StreamResponse:
    """Log in, throttled (login_limit.py): a source or name that failed too often is refused
    before its form is read or its password hashed, and so is a form without the login page's
    cookie, which could never pass its CSRF check."""
    expected = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not expected:
        raise Forbidden(auth.FORM_EXPIRED)
    app = request.app
    source = source_of(request)
    if refused := await refusal(request, source, None):
        return refused
    form = await posted(request, MAX_LOGIN_FORM)
    check_csrf(expected, form.get("csrf"))
    name = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    if len(name) > limits.MAX_USER_NAME or len(password) > limits.MAX_PASSWORD:
        raise BadRequest("the user name or password is too long")
    store, passwords, throttle = app[STORE], app[PASSWORDS], app[LOGIN_THROTTLE]
    found = await store.password_of(name)
    # From the checks to the hash's place in the queue, nothing awaits: tries in flight at
    # once cannot all pass the throttle, nor all queue for a hash.
    if refused := await refusal(request, source, name):
        return refused
    if passwords.busy():
        return throttled_page(request, 1.0, name)
    throttle.attempt(source, name, app[CLOCK].monotonic())
    if not await passwords.matches(password, found[1] if found else None):
        # The name is kept only if it is a user's: a password typed into it must not be.
        await store.record_login_failure(app[CLOCK].now(), name if found else "?", source)
        return login_page(request, 401, "Wrong user name or password.", name)
    assert found is not None
    throttle.succeeded(source, name, app[CLOCK].monotonic())
    if auth.is_outdated(found[1], passwords.n) and not passwords.busy():  # else next time
        await store.upgrade_password(found[0], found[1], await passwords.hash(password))
    await store.record_audit(app[CLOCK].now(), name, "login", "web")
    response = web.HTTPSeeOther(safe_next(str(form.get("next", "/"))))
    await auth.start_session(request, response, found[0])
    response.del_cookie(auth.LOGIN_COOKIE, path="/")
    raise response


async def refusal(request: web.Request, source: str, name: str | None) -> web.Response | None:
    """A 429 login page if `source` (trying `name`) must wait, else None. Refusals to one
    source go out one at a time (ratelimit.py's hold), so a flood of them costs little CPU."""
    app = request.app
    wait = app[LOGIN_THROTTLE].wait(source, name, app[CLOCK].monotonic())
    if wait <= 0:
        return None
    await asyncio.sleep(app[MISS_LIMITER].hold(source, asyncio.get_running_loop().time()))
    return throttled_page(request, wait, name or "")


def throttled_page(request: web.Request, wait: float, name: str) -> web.Response:
    seconds = math.ceil(wait)
    response = login_page(request, 429, f"Too many failed logins; try again in {seconds} s.", name)
    response.headers["Retry-After"] = str(seconds)
    return response


@routes.post("/logout")
@plain_errors
async def logout(request: web.Request) -> web.StreamResponse:
    user = await auth.current_user(request)
    response = web.HTTPSeeOther("/")
    if user is not None:
        check_csrf(user.csrf, (await posted(request)).get("csrf"))
        await auth.end_session(request, response)
    raise response


# -- creating and editing ------------------------------------------------------------------


def form_values(check: Check | None) -> dict[str, str]:
    """A check as its form shows it; a new check gets Healthchecks' defaults."""
    if check is None:
        return {"name": "", "slug": "", "tags": "", "desc": "", "kind": "period",
                "period": "1d", "cron": "0 3 * * *", "tz": "UTC", "grace": "1h"}  # fmt: skip
    return {
        "name": check.name, "slug": check.slug, "tags": check.tags, "desc": check.desc,
        "kind": "cron" if check.cron else "period",
        "period": format_duration(check.period) if check.period else "1d",
        "cron": check.cron or "0 3 * * *", "tz": check.tz, "grace": format_duration(check.grace),
    }  # fmt: skip


def parse_form(
    form: dict[str, str], existing: Check | None
) -> tuple[CheckDefinition | None, dict[str, str]]:
    """The definition a submitted form describes, or the mistakes in it, by field."""
    errors: dict[str, str] = {}
    name = _field(form, "name", fields.name, errors) or ""
    if not name and "name" not in errors:
        errors["name"] = "Give the check a name."
    slug = _field(form, "slug", fields.slug, errors) or model.slugify(name)
    tags = _field(form, "tags", lambda text: fields.tags(text.split()), errors)
    desc = _field(form, "desc", fields.desc, errors)
    tz = _field(form, "tz", lambda text: fields.tz(text or "UTC"), errors)
    period = cron = None
    if form["kind"] == "cron":
        cron = _field(form, "cron", lambda text: fields.cron(one_per_line(text)), errors)
    else:
        period = _field(form, "period", fields.duration, errors)
    grace = _field(form, "grace", fields.duration, errors)
    if errors or grace is None:
        return None, errors
    keep: dict[str, Any] = {}
    if existing is not None:
        keep = {"notifiers": existing.notifiers, "misses": existing.misses,
                "max_runtime": existing.max_runtime, "manual_resume": existing.manual_resume,
                "methods": existing.methods, "rules": existing.rules,
                "failures": existing.failures, "recoveries": existing.recoveries,
                "early": existing.early}  # fmt: skip
    definition = CheckDefinition(
        name=name, slug=slug, period=period, cron=cron, tz=tz or "UTC",
        grace=grace, tags=tags or (), desc=desc or "",
        **keep,
    )  # fmt: skip
    return definition, errors


def one_per_line(text: str) -> str:
    """OnCalendar lines as the API sends them: a textarea puts "\r\n" between them."""
    return "\n".join(line.strip() for line in text.splitlines())


def _field(form: dict[str, str], key: str, parse: Callable[[str], T], errors: dict[str, str]
           ) -> T | None:  # fmt: skip
    """The stripped field parsed, or None with its mistake in `errors` (capitalized, as a
    sentence under the field)."""
    try:
        return parse(form[key].strip())
    except ValueError as e:
        errors[key] = f"{str(e)[:1].upper()}{str(e)[1:]}."
        return None


async def submitted(request: web.Request, user: User) -> dict[str, str]:
    form = await posted(request)
    check_csrf(user.csrf, form.get("csrf"))
    fields = ("name", "slug", "tags", "desc", "kind", "period", "cron", "tz", "grace")
    return {key: str(form.get(key, "")) for key in fields}


@routes.get("/checks/new")
@plain_errors
async def new_form(request: web.Request) -> web.Response:
    user = await require_admin(request)
    return render(request, "check_form.html", user=user, values=form_values(None), errors={},
                  check=None)  # fmt: skip


@routes.post("/checks/new")
@plain_errors
async def create(request: web.Request) -> web.Response:
    user = await require_admin(request)
    values = await submitted(request, user)
    definition, errors = parse_form(values, None)
    if definition is None:
        return render(request, "check_form.html", http_status=400, user=user, values=values,
                      errors=errors, check=None)  # fmt: skip
    app = request.app
    check = await app[CHECKS].add(definition, user.name)
    raise web.HTTPSeeOther(f"/checks/{check.uuid}")


async def editable(request: web.Request) -> Check:
    check = await request.app[STORE].check_by_uuid(request.match_info["uuid"])
    if check.managed:
        raise Forbidden("this check is declared in the config file; change it there")
    return check


@routes.get(f"/checks/{UUID_PATH}/edit")
@plain_errors
async def edit_form(request: web.Request) -> web.Response:
    user = await require_admin(request)
    check = await editable(request)
    return render(request, "check_form.html", user=user, values=form_values(check), errors={},
                  check=check)  # fmt: skip


@routes.post(f"/checks/{UUID_PATH}/edit")
@plain_errors
async def edit(request: web.Request) -> web.Response:
    user = await require_admin(request)
    values = await submitted(request, user)
    check = await editable(request)
    definition, errors = parse_form(values, check)
    if definition is None:
        return render(request, "check_form.html", http_status=400, user=user, values=values,
                      errors=errors, check=check)  # fmt: skip

    def build(current: Check | None) -> CheckDefinition:
        if current is None or current.managed:  # it may have changed since we looked
            raise Forbidden("this check is declared in the config file; change it there")
        return definition

    app = request.app
    saved = await app[CHECKS].update(check.uuid, build, user.name)
    raise web.HTTPSeeOther(f"/checks/{saved.uuid}")


# -- one-click actions ---------------------------------------------------------------------


async def acting_user(request: web.Request) -> User:
    user = await require_admin(request)
    check_csrf(user.csrf, (await posted(request)).get("csrf"))
    return user


@routes.post(f"/checks/{UUID_PATH}/pause")
@plain_errors
async def pause(request: web.Request) -> web.Response:
    return await change_state(request, model.pause)


@routes.post(f"/checks/{UUID_PATH}/resume")
@plain_errors
async def resume(request: web.Request) -> web.Response:
    return await change_state(request, model.resume)


async def change_state(request: web.Request, change: Any) -> web.Response:
    user = await acting_user(request)
    app = request.app
    check, _ = await app[CHECKS].change_state(request.match_info["uuid"], change, user.name)
    raise web.HTTPSeeOther(f"/checks/{check.uuid}")


@routes.post(f"/checks/{UUID_PATH}/delete")
@plain_errors
async def delete(request: web.Request) -> web.Response:
    user = await acting_user(request)
    check = await editable(request)
    app = request.app
    await app[CHECKS].remove(check.uuid, user.name)
    raise web.HTTPSeeOther("/")


@routes.post(f"/checks/{UUID_PATH}/rotate")
@plain_errors
async def rotate(request: web.Request) -> web.Response:
    user = await acting_user(request)
    check = await editable(request)
    app = request.app
    rotated = await app[CHECKS].rotate(check.uuid, user.name)
    raise web.HTTPSeeOther(f"/checks/{rotated.uuid}")


@routes.post(f"/checks/{UUID_PATH}/test")
@plain_errors
async def send_test(request: web.Request) -> web.Response:
    """A test message through each notifier the check's down alerts go to, sent now."""
    user = await acting_user(request)
    app = request.app
    store = app[STORE]
    check = await store.check_by_uuid(request.match_info["uuid"])
    now = app[CLOCK].now()
    config = app[CONFIG]
    names = store.router(check, "down")
    flip = model.Flip(now, check.status, model.Status.DOWN, "test", "a test notification")
    event = Event("test", check, flip, config.site_url, now=now)
    notifiers = build_notifiers(config)
    try:
        outcomes = await asyncio.gather(*(_try(notifiers[n], event) for n in names))
    finally:
        await asyncio.gather(*(n.close() for n in notifiers.values()))
    await store.record_audit(now, user.name, "check.test", check.uuid)
    summary = "; ".join(f"{n}: {o}" for n, o in zip(names, outcomes, strict=True))
    message = f"Test notification: {summary}" if names else "No notifier gets this check's alerts."
    return await check_page_response(request, user, check, message)


async def _try(notifier: Notifier, event: Event) -> str:
    try:
        await asyncio.wait_for(notifier.send(event), notifier.timeout)
    except (NotifyError, TimeoutError, OSError) as e:
        return f"failed ({e or type(e).__name__})"
    return "delivered"
