"""The web UI over real HTTP: pages, access control, logins, CSRF, actions, escaping, badges."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.core import rules
from heartbeatd.core.config import ConfigError, load_config
from heartbeatd.core.schedule import Schedule, in_words
from heartbeatd.web.badges import badge_urls, signature
from heartbeatd.web.exposure import local_only
from heartbeatd.web.ui.auth import hash_password, verify_password
from tests.conftest import Daemon, cheap_hash, eventually

PASSWORD = "correct horse battery"
PRIVATE = "[ui]\npublic = false\n"
EVIL = "<script>alert(1)</script>"
RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match[1]


async def log_in(daemon: Daemon, user: str = "admin") -> str:
    """Log in through the form; returns the session's CSRF token."""
    await daemon.store.set_password(user, cheap_hash(PASSWORD), daemon.clock.now())
    form = await (await daemon.client.get("/login")).text()
    response = await daemon.client.post(
        "/login", data={"csrf": csrf_in(form), "user": user, "password": PASSWORD, "next": "/"}
    )
    assert response.status == 200 and response.url.path == "/"
    return csrf_in(await response.text())


async def page(daemon: Daemon, path: str, status: int = 200) -> str:
    response = await daemon.client.get(path)
    assert response.status == status, await response.text()
    return await response.text()


async def audit_actions(daemon: Daemon) -> list[tuple[str, str]]:
    return [(r["actor"], r["action"]) for r in reversed(await daemon.store.audit_log())]


# -- the dashboard --------------------------------------------------------------------------


async def test_the_dashboard_lists_every_check_down_first_with_its_details(
    daemon: Daemon,
) -> None:
    healthy = await daemon.add("web", period=300.0, grace=60.0, tags=("prod", "http"))
    failing = await daemon.add("zz backup", period=86400.0, tags=("prod",))
    await daemon.add("report", period=None, cron="0 3 * * *", tz="Europe/Berlin")
    await daemon.client.get(f"/ping/{healthy.uuid}/start?rid={RID}")
    await daemon.advance(42)
    await daemon.client.get(f"/ping/{healthy.uuid}?rid={RID}")
    await daemon.client.get(f"/ping/{failing.uuid}/fail")
    await daemon.advance(90)
    html = await page(daemon, "/")
    rows = re.findall(r'<tr class="row-(\w+)"', html)
    assert rows == ["down", "up", "new"]
    assert "every 5 minutes" in html and "at 03:00 every day in Europe/Berlin" in html
    assert 'href="?tag=prod"' in html and 'href="?tag=http"' in html
    assert 'title="2027-01-15 08:00:42 UTC">1m 30s ago</time>' in html
    assert ">in 3m 30s</time>" in html  # next expected ping of the healthy check
    assert ">42s</td>" in html  # its last run's duration
    assert 'aria-label="last 1 run: 0 succeeded, 1 failed"' in html
    assert '<path class="run-failed" d="M205.5 0v16"/>' in html and 'class="run-none"' in html


async def test_grace_shows_as_late(daemon: Daemon) -> None:
    check = await daemon.add("web", period=60.0, grace=60.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(70)
    assert re.findall(r'class="status status-(\w+)"', await page(daemon, "/")) == ["late"]


async def test_it_filters_by_status_and_tag(daemon: Daemon) -> None:
    up = await daemon.add("alpha", tags=("db",))
    down = await daemon.add("bravo", tags=("db",))
    await daemon.add("charlie", tags=("web",))
    await daemon.client.get(f"/ping/{up.uuid}")
    await daemon.client.get(f"/ping/{down.uuid}/fail")
    names = re.compile(r'class="name" href="[^"]+">([^<]+)<')
    assert names.findall(await page(daemon, "/?tag=db")) == ["bravo", "alpha"]
    assert names.findall(await page(daemon, "/?status=new")) == ["charlie"]
    assert names.findall(await page(daemon, "/?status=up&tag=db")) == ["alpha"]
    assert "No checks match this filter." in await page(daemon, "/?status=paused")


async def test_the_poll_gets_only_the_rows_and_the_down_count(daemon: Daemon) -> None:
    check = await daemon.add("alpha")
    await daemon.client.get(f"/ping/{check.uuid}/fail")
    response = await daemon.client.get("/?partial=rows")
    html = await response.text()
    assert html.lstrip().startswith("<tr") and "<html" not in html
    assert response.headers["X-Down-Count"] == "1"
    assert response.headers["Cache-Control"] == "no-store"


async def test_an_empty_dashboard_says_how_to_add_a_check(daemon: Daemon) -> None:
    assert "No checks yet." in await page(daemon, "/")


async def test_the_stylesheet_and_script_are_served(daemon: Daemon) -> None:
    css = await page(daemon, "/static/style.css")
    assert "prefers-color-scheme: dark" in css and "@media (max-width" in css
    assert "X-Down-Count" in await page(daemon, "/static/app.js")


# -- escaping ---------------------------------------------------------------------------


async def test_what_pingers_and_people_typed_shows_as_text(daemon: Daemon) -> None:
    check = await daemon.add(EVIL, tags=(EVIL,), desc=EVIL)
    await daemon.client.post(f"/ping/{check.uuid}", data=EVIL, headers={"User-Agent": EVIL})
    await daemon.client.post(f"/ping/{check.uuid}", data=f"{EVIL}\n" + "x" * 500)
    for html in (await page(daemon, "/"), await page(daemon, f"/checks/{check.uuid}")):
        assert "<script>" not in html.replace('<script src="/static/app.js" defer></script>', "")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# -- the check page ---------------------------------------------------------------------


async def test_the_check_page_shows_its_url_examples_and_ping_log(daemon: Daemon) -> None:
    check = await daemon.add("backup", period=300.0, grace=60.0)
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(12)
    long_body = "line one\n" + "more output\n" * 40
    await daemon.client.post(
        f"/ping/{check.uuid}/3?rid={RID}", data=long_body, headers={"User-Agent": "runitor/1.2"}
    )
    html = await page(daemon, f"/checks/{check.uuid}")
    url = f"http://127.0.0.1:0/ping/{check.uuid}"
    assert f'value="{url}"' in html and 'data-copy="ping-url"' in html
    curl = "curl -fsS -m 10 --retry 5 -o /dev/null"
    assert f"*/5 * * * * /path/to/job &amp;&amp; {curl} {url}" in html
    assert f"{url}/$?" in html and f"runitor -uuid {check.uuid}" in html
    assert f"ping_url: {url}" in html
    assert "runitor/1.2" in html and RID in html and ">POST<" in html and ">3<" in html
    assert "<details><summary>line one <span" in html  # long bodies fold
    assert "12.0 s" in html  # the run's duration
    assert "new</span> → <span" in html and "fail: exit status 3" in html
    assert 'class="chart"' in html


async def test_the_check_page_lists_notifications_and_their_outcome(daemon: Daemon) -> None:
    check = await daemon.add("backup")
    await daemon.client.get(f"/ping/{check.uuid}/fail")
    await eventually(lambda: _sent(daemon, check.id))
    html = await page(daemon, f"/checks/{check.uuid}")
    assert ">down</td>" in html and ">log</td>" in html and "sent after 1 attempt" in html


async def _sent(daemon: Daemon, check_id: int) -> bool:
    rows = await daemon.store.outbox(10, check_id)
    return bool(rows) and rows[0]["state"] == "sent"


async def test_the_next_expected_times_follow_the_zone_across_dst(daemon: Daemon) -> None:
    check = await daemon.add("report", period=None, cron="0 3 * * *", tz="Europe/Berlin")
    await daemon.advance(1_806_062_400 - daemon.clock.now())  # 2027-03-26 12:00 UTC
    html = await page(daemon, f"/checks/{check.uuid}")
    times = re.findall(r"<li>(\w{3} \d{4}-\d\d-\d\d \d\d:\d\d \w+)</li>", html)
    assert times == [
        "Sat 2027-03-27 03:00 CET", "Sun 2027-03-28 03:00 CEST", "Mon 2027-03-29 03:00 CEST",
        "Tue 2027-03-30 03:00 CEST", "Wed 2027-03-31 03:00 CEST",
    ]  # fmt: skip


async def test_an_unknown_check_is_404(daemon: Daemon) -> None:
    await page(daemon, "/checks/6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10", 404)
    await page(daemon, "/checks/not-a-uuid", 404)


# -- access -----------------------------------------------------------------------------


def test_only_a_loopback_listener_with_no_proxy_and_a_local_site_is_local(make_config: Any) -> None:
    assert local_only(make_config(listen="127.0.0.1:8000"))
    assert local_only(make_config(listen="[::1]:8000"))
    assert not local_only(make_config(listen="0.0.0.0:8000"))
    assert not local_only(make_config(listen="127.0.0.1:8000", trusted_proxies="127.0.0.1"))
    assert not local_only(make_config(listen="127.0.0.1:8000", site_url="https://hb.example.net"))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[ui]\npublik = true\n",
            ":2: ui.publik: unknown key; [ui] takes public, trusted_header, trusted_header_role",
        ),
        ('[ui]\ntrusted_header = "X User"\n', ":2: ui.trusted_header: expected an HTTP header"),
        ('[ui]\ntrusted_header_role = "root"\n', ":2: ui.trusted_header_role: expected one of"),
        (
            '\n[ui]\ntrusted_header = "Remote-User"\n',
            ":3: ui.trusted_header: needs trusted_proxies: the header is believed only from",
        ),
        ('\n[ui]\npublic = "yes"\n', ":3: ui.public: expected true or false, got 'yes'"),
        ("ui = 1\n", ":1: ui: write it as a [ui] table"),
    ],
)
def test_ui_config_mistakes_name_file_and_line(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(path, {}, {})
    assert str(e.value).startswith(f"{path}{message}")


async def test_a_private_ui_sends_visitors_to_the_login_page(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    check = await daemon.add("backup")
    for path in ("/", "/?partial=rows", f"/checks/{check.uuid}"):
        response = await daemon.client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login?next=/")
    assert "No user has a password yet" in await page(daemon, "/login")


async def test_login_sets_a_hashed_http_only_session_and_returns_to_next(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon(PRIVATE)
    await daemon.store.set_password("ops", cheap_hash(PASSWORD), daemon.clock.now())
    form = await page(daemon, "/login?next=/%3Fstatus%3Ddown")
    response = await daemon.client.post(
        "/login",
        data={"csrf": csrf_in(form), "user": "ops", "password": PASSWORD, "next": "/?status=down"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/?status=down"
    cookie = response.cookies["heartbeatd_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    stored = await daemon.query("SELECT token_hash FROM sessions")
    assert stored == [(hashlib.sha256(cookie.value.encode()).hexdigest(),)]
    assert "Log out ops" in await page(daemon, "/")
    assert await audit_actions(daemon) == [("ops", "login")]


async def test_the_session_cookie_is_secure_behind_an_https_proxy(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE + "\n", trusted_proxies="127.0.0.1")
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    https = {"X-Forwarded-Proto": "https"}
    login_form = await daemon.client.get("/login", headers=https)
    form_cookie = login_form.cookies["heartbeatd_login"]
    assert form_cookie["secure"]  # so the test client will not send it back over http: we do
    form = await login_form.text()
    response = await daemon.client.post(
        "/login", allow_redirects=False,
        headers={**https, "Cookie": f"heartbeatd_login={form_cookie.value}"},
        data={"csrf": csrf_in(form), "user": "admin", "password": PASSWORD},
    )  # fmt: skip
    assert response.cookies["heartbeatd_session"]["secure"]


async def test_a_wrong_password_is_refused_and_audited(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    form = await page(daemon, "/login")
    response = await daemon.client.post(
        "/login", data={"csrf": csrf_in(form), "user": "admin", "password": "guess"}
    )
    assert response.status == 401
    assert "Wrong user name or password." in await response.text()
    assert "heartbeatd_session" not in response.cookies
    assert await audit_actions(daemon) == [("admin", "login.fail")]


async def test_a_login_form_without_its_csrf_token_is_refused(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    await page(daemon, "/login")  # sets the form's cookie
    response = await daemon.client.post(
        "/login", data={"csrf": "forged", "user": "admin", "password": PASSWORD}
    )
    assert response.status == 403
    assert "heartbeatd_session" not in response.cookies


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "javascript:x"]
)
async def test_login_never_redirects_off_site(start_daemon: Any, target: str) -> None:
    daemon = await start_daemon(PRIVATE)
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    form = await page(daemon, "/login")
    response = await daemon.client.post(
        "/login", allow_redirects=False,
        data={"csrf": csrf_in(form), "user": "admin", "password": PASSWORD, "next": target},
    )  # fmt: skip
    assert response.headers["Location"] == "/"


async def test_badges_need_no_login_on_a_private_ui(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    check = await daemon.add("web")
    await log_in(daemon)
    html = await page(daemon, f"/checks/{check.uuid}")
    badge = re.search(r'<img src="(/b/2/[^"]+\.svg)"', html)
    assert badge
    await daemon.client.post("/logout", data={"csrf": csrf_in(html)})
    assert (await page(daemon, badge[1])).startswith("<svg")


async def test_logout_ends_the_session(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    response = await daemon.client.post("/logout", data={"csrf": csrf})
    assert response.url.path == "/login"
    assert await daemon.query("SELECT count(*) FROM sessions") == [(0,)]


async def test_a_changed_password_ends_existing_sessions(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    await log_in(daemon)
    await daemon.store.set_password("admin", cheap_hash("another one"), daemon.clock.now())
    response = await daemon.client.get("/", allow_redirects=False)
    assert response.status == 303


def test_passwords_are_stored_as_salted_scrypt() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$131072$8$1$") and PASSWORD not in stored
    assert stored != hash_password(PASSWORD)  # a fresh salt each time
    assert verify_password(PASSWORD, stored) and not verify_password("nope", stored)
    assert not verify_password(PASSWORD, "garbage") and not verify_password(PASSWORD, "a$b$c$d$e$f")


# -- the set-password command -----------------------------------------------------------


def test_set_password_prompts_twice_and_stores_a_hash(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    runner = CliRunner()
    result = runner.invoke(cli, ["user", "set-password", "--db", db, "--user", "ops"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Password set for 'ops'" in result.output
    mismatch = runner.invoke(cli, ["user", "set-password", "--db", db],
                             input=f"{PASSWORD}\nother\n{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert "do not match" in mismatch.output and mismatch.exit_code == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, password FROM users ORDER BY name").fetchall()
    conn.close()
    assert [name for name, _ in rows] == ["admin", "ops"]
    assert all(verify_password(PASSWORD, stored) for _, stored in rows)


def test_set_password_reads_stdin_and_refuses_a_short_or_huge_password(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    runner = CliRunner()
    ok = runner.invoke(cli, ["user", "set-password", "--db", db, "--stdin"], input=PASSWORD + "\n")
    assert ok.exit_code == 0, ok.output
    short = runner.invoke(cli, ["user", "set-password", "--db", db, "--stdin"], input="short\n")
    assert short.exit_code == 1 and "needs 8 to 1024 characters" in short.output
    huge = runner.invoke(cli, ["user", "set-password", "--db", db, "--stdin"], input="x" * 1025)
    assert huge.exit_code == 1 and "needs 8 to 1024 characters" in huge.output


# -- actions ----------------------------------------------------------------------------


async def test_a_logged_in_user_creates_a_check(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    assert "New check" in await page(daemon, "/checks/new")
    response = await daemon.client.post("/checks/new", data={
        "csrf": csrf, "name": "Nightly DB", "slug": "", "tags": "db prod", "desc": "pg_dump",
        "kind": "cron", "period": "", "cron": "30 2 * * *", "tz": "Europe/Berlin", "grace": "2h",
    })  # fmt: skip
    assert response.status == 200 and response.url.path.startswith("/checks/")
    (check,) = await daemon.store.list_checks()
    saved = (check.name, check.slug, check.tags, check.cron, check.tz, check.grace, check.period)
    assert saved == ("Nightly DB", "nightly-db", "db prod", "30 2 * * *", "Europe/Berlin", 7200.0,
                     None)  # fmt: skip
    assert await audit_actions(daemon) == [("admin", "login"), ("admin", "check.create")]


async def test_a_bad_form_is_shown_again_with_its_mistakes_and_values(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    response = await daemon.client.post("/checks/new", data={
        "csrf": csrf, "name": "keep me", "slug": "Bad Slug", "tags": "", "desc": "",
        "kind": "period", "period": "soon", "cron": "", "tz": "UTC", "grace": "1h",
    })  # fmt: skip
    html = await response.text()
    assert response.status == 400
    assert 'value="keep me"' in html and "Use lowercase letters" in html
    assert "Expected a duration like" in html
    assert await daemon.store.list_checks() == []


async def test_a_logged_in_user_edits_pauses_resumes_rotates_and_deletes(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    check = await daemon.add("web", period=60.0)
    form = await page(daemon, f"/checks/{check.uuid}/edit")
    assert 'value="1m"' in form
    edited = await daemon.client.post(f"/checks/{check.uuid}/edit", data={
        "csrf": csrf, "name": "web frontend", "slug": "web", "tags": "http", "desc": "",
        "kind": "period", "period": "10m", "cron": "", "tz": "UTC", "grace": "5m",
    })  # fmt: skip
    assert edited.status == 200
    (saved,) = await daemon.store.list_checks()
    assert (saved.name, saved.period, saved.grace, saved.tags) == ("web frontend", 600.0, 300.0,
                                                                   "http")  # fmt: skip
    await daemon.client.post(f"/checks/{check.uuid}/pause", data={"csrf": csrf})
    assert (await daemon.store.check_by_uuid(check.uuid)).status == "paused"
    assert ">Resume</button>" in await page(daemon, f"/checks/{check.uuid}")
    await daemon.client.post(f"/checks/{check.uuid}/resume", data={"csrf": csrf})
    assert (await daemon.store.check_by_uuid(check.uuid)).status == "new"
    rotated = await daemon.client.post(f"/checks/{check.uuid}/rotate", data={"csrf": csrf})
    new_uuid = rotated.url.path.rsplit("/", 1)[1]
    assert new_uuid != check.uuid
    assert (await daemon.client.get(f"/ping/{check.uuid}")).status == 404
    assert (await daemon.client.get(f"/ping/{new_uuid}")).status == 200
    await daemon.client.post(f"/checks/{new_uuid}/delete", data={"csrf": csrf})
    assert await daemon.store.list_checks() == []
    assert [a for _, a in await audit_actions(daemon)] == [
        "login", "check.update", "check.pause", "check.resume", "check.rotate", "check.delete",
    ]  # fmt: skip


async def test_a_test_notification_goes_out_and_its_outcome_is_shown(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    csrf = await log_in(daemon)
    check = await daemon.add("web")
    response = await daemon.client.post(f"/checks/{check.uuid}/test", data={"csrf": csrf})
    assert response.status == 200
    assert "Test notification: log: delivered" in await response.text()


@pytest.mark.parametrize("action", ["pause", "resume", "rotate", "delete", "test", "edit"])
async def test_an_action_without_the_csrf_token_is_refused(start_daemon: Any, action: str) -> None:
    daemon = await start_daemon(PRIVATE)
    await log_in(daemon)
    check = await daemon.add("web")
    response = await daemon.client.post(f"/checks/{check.uuid}/{action}", data={"csrf": "x"})
    assert response.status == 403
    assert await daemon.store.list_checks() == [check]


async def test_creating_without_the_csrf_token_is_refused(start_daemon: Any) -> None:
    daemon = await start_daemon(PRIVATE)
    await log_in(daemon)
    response = await daemon.client.post("/checks/new", data={"name": "x", "kind": "period"})
    assert response.status == 403
    assert await daemon.store.list_checks() == []


@pytest.mark.parametrize("action", ["pause", "rotate", "delete", "edit"])
async def test_actions_need_a_login_even_on_a_public_ui(daemon: Daemon, action: str) -> None:
    check = await daemon.add("web")
    response = await daemon.client.post(f"/checks/{check.uuid}/{action}", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")
    assert await daemon.store.list_checks() == [check]
    assert ">Pause</button>" not in await page(daemon, f"/checks/{check.uuid}")


MANAGED = PRIVATE + '\n[[check]]\nname = "From file"\nperiod = "1h"\n'


async def test_checks_from_the_config_file_are_not_editable_in_the_ui(start_daemon: Any) -> None:
    daemon = await start_daemon(MANAGED)
    csrf = await log_in(daemon)
    (check,) = await daemon.store.list_checks()
    html = await page(daemon, f"/checks/{check.uuid}")
    assert "This check is declared in the config file" in html
    assert "/edit" not in html and "/delete" not in html and "/rotate" not in html
    await page(daemon, f"/checks/{check.uuid}/edit", 403)
    for action in ("edit", "rotate", "delete"):
        response = await daemon.client.post(f"/checks/{check.uuid}/{action}", data={
            "csrf": csrf, "name": "hijacked", "slug": "", "tags": "", "desc": "",
            "kind": "period", "period": "1m", "cron": "", "tz": "UTC", "grace": "1m",
        })  # fmt: skip
        assert response.status == 403
        assert "declared in the config file" in await response.text()
    assert await daemon.store.list_checks() == [check]
    paused = await daemon.client.post(f"/checks/{check.uuid}/pause", data={"csrf": csrf})
    assert paused.status == 200  # pausing is state, not definition


# -- badges -----------------------------------------------------------------------------


async def test_badges_report_checks_and_tags_in_every_format(daemon: Daemon) -> None:
    up = await daemon.add("web", period=60.0, grace=60.0, tags=("prod",))
    late = await daemon.add("db", period=60.0, grace=600.0, tags=("prod", "db"))
    await daemon.client.get(f"/ping/{up.uuid}")
    await daemon.client.get(f"/ping/{late.uuid}")
    await daemon.advance(30)
    await daemon.client.get(f"/ping/{up.uuid}")
    await daemon.advance(40)  # db is late now, web is not
    await log_in(daemon)
    html = await page(daemon, "/")
    all_svg = re.search(r'href="(/badge/[^"/]+/[^"/]+-2\.svg)"', html)[1]  # type: ignore[index]
    assert (await page(daemon, all_svg)).startswith("<svg")
    prod_json = re.search(r'href="(/badge/[^"]+/prod\.json)"', html)[1]  # type: ignore[index]
    assert await (await daemon.client.get(prod_json)).json() == {
        "status": "up", "total": 2, "grace": 1, "down": 0,
    }  # fmt: skip  # two states: late counts as up
    three = prod_json.replace("-2/", "/")
    assert (await (await daemon.client.get(three)).json())["status"] == "late"
    shields = await (await daemon.client.get(three.replace(".json", ".shields"))).json()
    assert shields == {"schemaVersion": 1, "label": "prod", "message": "late", "color": "important"}
    check_page = await page(daemon, f"/checks/{late.uuid}")
    per_check = re.search(r'<img src="(/b/2/[^"]+\.svg)"', check_page)[1]  # type: ignore[index]
    svg = await daemon.client.get(per_check.replace("/b/2/", "/b/3/"))
    assert svg.content_type == "image/svg+xml" and ">late</text>" in await svg.text()
    assert late.uuid not in per_check  # a badge never reveals the ping URL


async def test_a_signature_that_ends_in_dash_2_still_serves_both_forms(daemon: Daemon) -> None:
    """base64url signatures end in "-2" once in 4096 tags: the three-state URL must not be
    taken for the two-state one (a CI run met such a tag)."""
    secret = await daemon.store.badge_secret()
    tag = next(f"t{n}" for n in range(100_000) if signature(secret, f"t{n}").endswith("-2"))
    late = await daemon.add("db", period=60.0, grace=600.0, tags=(tag,))
    await daemon.client.get(f"/ping/{late.uuid}")
    await daemon.advance(70)
    urls = badge_urls(secret, tag, with_late=True)
    assert (await (await daemon.client.get(urls["json"])).json())["status"] == "late"
    urls = badge_urls(secret, tag)
    assert (await (await daemon.client.get(urls["json"])).json())["status"] == "up"


async def test_badges_escape_names_and_reject_wrong_keys(daemon: Daemon) -> None:
    check = await daemon.add(EVIL)
    await daemon.client.get(f"/ping/{check.uuid}/fail")
    per_check = re.search(r'src="(/b/2/[^"]+)\.svg"', await page(daemon, f"/checks/{check.uuid}"))
    assert per_check
    svg = await page(daemon, per_check[1] + ".svg")
    assert EVIL not in svg and "&lt;script&gt;" in svg and ">down</text>" in svg
    await page(daemon, "/b/2/AAAAAAAAAAAAAAAAAAAAAA.svg", 404)
    await page(daemon, per_check[1] + ".gif", 404)
    await page(daemon, "/badge/wrong/abcdefgh-2.svg", 404)


def test_schedules_read_as_words() -> None:
    assert in_words(Schedule(60.0, period=300.0)) == "every 5 minutes"
    assert in_words(Schedule(60.0, period=3600.0)) == "every hour"
    assert in_words(Schedule(60.0, period=90.0)) == "every 90 seconds"
    assert in_words(Schedule(60.0, period=2 * 86400.0)) == "every 2 days"
    cron = Schedule(60.0, cron="0 3 * * *", tz="Europe/Berlin")
    assert in_words(cron) == "at 03:00 every day in Europe/Berlin"


# -- metrics and assertions on the check page (issue 8) --------------------------------------


def chart_of(html: str, label_start: str) -> str:
    """The one chart whose accessible label starts with `label_start`."""
    (svg,) = re.findall(rf'<svg class="chart"[^>]*aria-label="{label_start}.*?</svg>', html)
    return svg


async def test_the_check_page_shows_metrics_the_broken_assertion_and_a_chart(
    daemon: Daemon,
) -> None:
    table = {"bytes": "> 0", "duration": "<= 2h"}
    check = await daemon.add("backup", grace=3600.0, rules=rules.from_config({"assert": table}))
    await daemon.client.get(f"/ping/{check.uuid}?bytes=5200000000&count=12")
    await daemon.client.get(f"/ping/{check.uuid}?bytes=300&count=7&junk=12%20MB")
    await daemon.client.get(f"/ping/{check.uuid}/start?rid={RID}")
    await daemon.advance(90)
    await daemon.client.get(f"/ping/{check.uuid}?rid={RID}&bytes=0&count=3")
    html = await page(daemon, f"/checks/{check.uuid}")
    assert "<code>bytes=5200000000 count=12</code>" in html
    assert "<code>bytes=0 count=3</code>" in html
    assert "ignored junk=&#39;12 MB&#39;: not a finite number" in html
    assert "assertion failed: bytes &gt; 0 (got 0)" in html  # the ping's note
    assert "assertion: bytes &gt; 0 (got 0)" in html  # the status change's reason
    assert "bytes &gt; 0, duration &lt;= 2h (pings without a metric pass)" in html
    assert "[check.assert]" in html
    chart = chart_of(html, "bytes in the last 3 pings that reported it")
    assert chart.count("<rect") == 3 and chart.count('class="run-failed"') == 1
    assert "<title>bytes &gt; 0</title></line>" in chart
    assert ">5.2e+09</text>" in chart  # the scale, short enough for its gutter
    durations = chart_of(html, "durations of the last 1 runs")
    assert "<title>duration &lt;= 2h</title></line>" in durations  # 2h, far above 1m 30s
    assert ">2h</text>" in durations


async def test_without_assertions_the_chart_is_of_the_most_reported_metric(
    daemon: Daemon,
) -> None:
    check = await daemon.add("etl")
    for query in ("rows=10", "rows=12&errors=1", "rows=-3", "errors=0&rows=11"):
        await daemon.client.get(f"/ping/{check.uuid}?{query}")
    await daemon.client.get(f"/ping/{check.uuid}")
    html = await page(daemon, f"/checks/{check.uuid}")
    assert '<h2 id="metric-h">rows</h2>' in html
    chart = chart_of(html, "rows in the last 4 pings that reported it; highest 12")
    assert chart.count("<rect") == 4 and "<line" not in chart
    assert ">-3</text>" in chart  # a negative value extends the scale below 0
    assert "None: every success ping counts as a good run." in html


async def test_a_check_without_metrics_has_no_metric_chart(daemon: Daemon) -> None:
    check = await daemon.add("plain")
    await daemon.client.get(f"/ping/{check.uuid}")
    html = await page(daemon, f"/checks/{check.uuid}")
    assert 'id="metric-h"' not in html and 'aria-label="durations' not in html


async def test_notes_quoting_what_a_pinger_sent_are_escaped(daemon: Daemon) -> None:
    keyword = rules.from_config({"failure_kw": EVIL})
    check = await daemon.add("backup", rules=keyword)
    await daemon.client.get(f"/ping/{check.uuid}?%3Cb%3Eoops%3C%2Fb%3E=1&x=%3Cimg%20src%3Dx%3E")
    await daemon.client.post(f"/ping/{check.uuid}", data=f"output {EVIL}")
    html = await page(daemon, f"/checks/{check.uuid}")
    assert "<b>oops" not in html and "<img src=x" not in html
    assert "ignored metric &#39;&lt;b&gt;oops&lt;/b&gt;&#39;" in html
    assert "ignored x=&#39;&lt;img src=x&gt;&#39;" in html
    assert "<script>" not in html.replace('<script src="/static/app.js" defer></script>', "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
