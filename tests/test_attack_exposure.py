"""Who reaches what: the exposure model, tried as a stranger behind the proxy would.

Holes proven closed (issue 18): 1 (the status page public behind a proxy: a loopback peer is
not a local person when a proxy is configured or the request came through one), 5 (an empty
CSRF token matched when there was no login cookie), 9 (/metrics public with `[ui] public =
false`), and from point 10 the missing `X-Content-Type-Options`/`frame-ancestors`. Also what was
built with it: the viewer role (reads, never sees a ping URL, changes nothing), sign-in by a
trusted proxy's header, `heartbeatd user add|list|remove`, and the one line `serve` logs about
what is public.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from heartbeatd.cli import cli
from heartbeatd.core.model import unique_key
from heartbeatd.web.exposure import summary
from tests.conftest import Daemon, cheap_hash
from tests.test_crash import Daemon as Process
from tests.test_web import PASSWORD, csrf_in

BEHIND_PROXY = {"trusted_proxies": "127.0.0.1", "site_url": "https://hb.example.net"}
FROM_PROXY = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
HEADER_SIGN_IN = '[ui]\ntrusted_header = "Remote-User"\n'


async def get(daemon: Daemon, path: str, **headers: str) -> tuple[int, str]:
    response = await daemon.client.get(path, headers=headers, allow_redirects=False)
    return response.status, await response.text()


def leaks(html: str, check: Any) -> bool:
    """Whether the page gives away the check's ping URL (its UUID is the secret)."""
    return check.uuid in html


# -- hole 1: behind a proxy, a loopback peer is nobody in particular ----------------------


async def test_a_stranger_through_the_proxy_must_log_in(start_daemon: Any) -> None:
    daemon = await start_daemon(listen="127.0.0.1:8000", **BEHIND_PROXY)
    check = await daemon.add("backup")
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    for path in ("/", f"/checks/{check.uuid}", f"/checks/{unique_key(check.uuid)}"):
        status, html = await get(daemon, path, **FROM_PROXY)
        assert status == 303 and not leaks(html, check), path


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.7"},  # a proxy we were not told of
        {"Forwarded": "for=203.0.113.7"},
        {"X-Real-IP": "203.0.113.7"},
        {"Host": "rebind.attacker.example:8000"},  # DNS rebinding from a local browser
    ],
)
async def test_a_relayed_request_is_not_local_even_without_a_proxy_configured(
    daemon: Daemon, headers: dict[str, str]
) -> None:
    check = await daemon.add("backup")
    status, html = await get(daemon, "/", **headers)
    assert status == 303 and not leaks(html, check)
    assert (await get(daemon, "/metrics", **headers))[0] == 401


async def test_a_local_visitor_still_reads_everything_without_logging_in(daemon: Daemon) -> None:
    check = await daemon.add("backup")
    status, html = await get(daemon, f"/checks/{check.uuid}")
    assert status == 200 and f"/ping/{check.uuid}" in html


async def test_dashboard_links_name_checks_by_unique_key_not_by_ping_uuid(daemon: Daemon) -> None:
    check = await daemon.add("backup")
    status, html = await get(daemon, "/")
    assert status == 200 and not leaks(html, check)
    assert f'href="/checks/{unique_key(check.uuid)}"' in html
    status, html = await get(daemon, f"/checks/{unique_key(check.uuid)}")
    assert status == 200 and "backup" in html


async def test_a_public_page_shows_states_but_no_ping_urls(start_daemon: Any) -> None:
    daemon = await start_daemon("[ui]\npublic = true\n", listen="127.0.0.1:8000", **BEHIND_PROXY)
    check = await daemon.add("backup")
    for path in ("/", f"/checks/{unique_key(check.uuid)}"):
        status, html = await get(daemon, path, **FROM_PROXY)
        assert status == 200 and "backup" in html and not leaks(html, check)


# -- hole 9: /metrics --------------------------------------------------------------------


async def test_metrics_are_closed_behind_a_proxy_unless_a_key_or_the_config_opens_them(
    start_daemon: Any,
) -> None:
    closed = await start_daemon("[ui]\npublic = false\n", **BEHIND_PROXY)
    await closed.add("backup")
    status, text = await get(closed, "/metrics", **FROM_PROXY)
    assert status == 401 and "backup" not in text
    assert (await get(closed, "/metrics"))[0] == 401  # the proxy's own address, no header
    opened = await start_daemon("metrics_public = true\n", **BEHIND_PROXY)
    await opened.add("backup")
    status, text = await get(opened, "/metrics", **FROM_PROXY)
    assert status == 200 and 'slug="backup"' in text


async def test_a_local_scraper_reads_metrics_without_a_key(daemon: Daemon) -> None:
    await daemon.add("backup")
    status, text = await get(daemon, "/metrics")
    assert status == 200 and 'slug="backup"' in text


# -- hole 5: CSRF ------------------------------------------------------------------------


async def test_an_empty_csrf_token_without_a_login_cookie_is_refused(daemon: Daemon) -> None:
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    response = await daemon.client.post(
        "/login",
        data={"csrf": "", "user": "admin", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.status == 403
    assert "heartbeatd_session" not in response.cookies


# -- point 10: headers a browser needs ------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login", "/ping/x", "/api/v3/checks/", "/static/app.js"])
async def test_every_answer_forbids_framing_and_sniffing(daemon: Daemon, path: str) -> None:
    response = await daemon.client.get(path, allow_redirects=False)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# -- the viewer role -------------------------------------------------------------------------


async def sign_in(daemon: Daemon, name: str, role: str) -> str:
    """Log in through the form as a user of `role`; returns the page's CSRF token."""
    await daemon.store.set_password(name, cheap_hash(PASSWORD), daemon.clock.now(), role)
    form = await (await daemon.client.get("/login")).text()
    response = await daemon.client.post(
        "/login", data={"csrf": csrf_in(form), "user": name, "password": PASSWORD, "next": "/"}
    )
    assert response.status == 200, await response.text()
    return csrf_in(await response.text())


async def test_a_viewer_reads_states_but_no_ping_url_and_changes_nothing(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon(**BEHIND_PROXY)
    check = await daemon.add("backup")
    csrf = await sign_in(daemon, "eve", "viewer")
    for path in ("/", f"/checks/{unique_key(check.uuid)}", f"/checks/{check.uuid}"):
        status, html = await get(daemon, path, **FROM_PROXY)
        assert status == 200 and "backup" in html
        assert f"/ping/{check.uuid}" not in html and "Pause" not in html and "/badge/" not in html
    refused = await daemon.client.post(
        f"/checks/{check.uuid}/pause", data={"csrf": csrf}, headers=FROM_PROXY
    )
    assert refused.status == 403 and "viewer" in await refused.text()
    assert (await get(daemon, "/checks/new", **FROM_PROXY))[0] == 403
    assert (await daemon.store.get_check(check.uuid)).status != "paused"


async def test_an_admin_behind_the_proxy_sees_ping_urls_and_acts(start_daemon: Any) -> None:
    daemon = await start_daemon(**BEHIND_PROXY)
    check = await daemon.add("backup")
    csrf = await sign_in(daemon, "root", "admin")
    status, html = await get(daemon, f"/checks/{unique_key(check.uuid)}", **FROM_PROXY)
    assert status == 200 and f"https://hb.example.net/ping/{check.uuid}" in html
    paused = await daemon.client.post(f"/checks/{check.uuid}/pause", data={"csrf": csrf})
    assert paused.status == 200
    assert (await daemon.store.get_check(check.uuid)).status == "paused"


# -- sign-in by the proxy's header ---------------------------------------------------------


async def test_the_proxy_header_signs_in_only_from_a_trusted_proxy(start_daemon: Any) -> None:
    trusted = await start_daemon(HEADER_SIGN_IN, **BEHIND_PROXY)
    check = await trusted.add("backup")
    await trusted.store.set_password("alice", "!", trusted.clock.now(), "admin")
    status, html = await get(trusted, f"/checks/{check.uuid}", **FROM_PROXY, **{
        "Remote-User": "alice"})  # fmt: skip
    assert status == 200 and f"/ping/{check.uuid}" in html and "Log out alice" in html
    paused = await trusted.client.post(
        f"/checks/{check.uuid}/pause",
        data={"csrf": csrf_in(html)},
        headers={**FROM_PROXY, "Remote-User": "alice"},
    )
    assert paused.status == 200
    assert (await trusted.store.get_check(check.uuid)).status == "paused"

    untrusted = await start_daemon(HEADER_SIGN_IN, trusted_proxies="10.0.0.0/8")
    other = await untrusted.add("backup")
    status, html = await get(untrusted, "/", **{"Remote-User": "alice", **FROM_PROXY})
    assert status == 303 and not leaks(html, other)


async def test_a_header_name_that_is_no_user_here_gets_the_configured_role(
    start_daemon: Any,
) -> None:
    daemon = await start_daemon(HEADER_SIGN_IN, **BEHIND_PROXY)
    check = await daemon.add("backup")
    status, html = await get(daemon, f"/checks/{check.uuid}", **FROM_PROXY, **{
        "Remote-User": "stranger"})  # fmt: skip
    assert status == 200 and f"/ping/{check.uuid}" not in html  # a viewer, by default
    refused = await daemon.client.post(
        f"/checks/{check.uuid}/pause",
        data={"csrf": csrf_in(html)},
        headers={**FROM_PROXY, "Remote-User": "stranger"},
    )
    assert refused.status == 403


async def test_a_header_csrf_token_from_another_name_is_refused(start_daemon: Any) -> None:
    daemon = await start_daemon(HEADER_SIGN_IN + 'trusted_header_role = "admin"\n', **BEHIND_PROXY)
    check = await daemon.add("backup")
    _, html = await get(daemon, "/", **FROM_PROXY, **{"Remote-User": "mallory"})
    forged = await daemon.client.post(
        f"/checks/{check.uuid}/pause",
        data={"csrf": csrf_in(html)},
        headers={**FROM_PROXY, "Remote-User": "alice"},
    )
    assert forged.status == 403


# -- the command line and the start-up line ----------------------------------------------------


def test_users_are_added_listed_and_removed_from_the_command_line(tmp_path: Any) -> None:
    db = str(tmp_path / "hb.db")
    runner = CliRunner()
    added = runner.invoke(
        cli, ["user", "add", "eve", "--role", "viewer", "--stdin", "--db", db], input=PASSWORD
    )
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli, ["user", "add", "bob", "--no-password", "--db", db]).exit_code == 0
    again = runner.invoke(cli, ["user", "add", "eve", "--no-password", "--db", db])
    assert again.exit_code != 0 and "already" in again.output
    listed = runner.invoke(cli, ["user", "list", "--db", db]).output
    assert re.search(r"bob\s+admin\s+\S+\s+header", listed)
    assert re.search(r"eve\s+viewer\s+\S+\s+password", listed)
    assert runner.invoke(cli, ["user", "remove", "eve", "--db", db]).exit_code == 0
    assert "eve" not in runner.invoke(cli, ["user", "list", "--db", db]).output
    missing = runner.invoke(cli, ["user", "remove", "eve", "--db", db])
    assert missing.exit_code != 0 and "no user 'eve'" in missing.output


@pytest.mark.parametrize("name", ["", " eve", "e" * 201])
def test_a_user_the_login_form_could_never_match_is_refused(tmp_path: Any, name: str) -> None:
    db = str(tmp_path / "hb.db")
    result = CliRunner().invoke(cli, ["user", "add", name, "--no-password", "--db", db])
    assert result.exit_code == 2 and "1 to 200 characters" in result.output


def test_the_summary_says_what_a_stranger_gets(make_config: Any) -> None:
    local = summary(make_config(listen="127.0.0.1:8000"))
    assert "status page local visitors read it, others log in" in local
    assert "/metrics local only" in local
    proxied = summary(make_config(HEADER_SIGN_IN, listen="127.0.0.1:8000", **BEHIND_PROXY))
    assert "status page login required" in proxied
    assert "sign-in password or header Remote-User from 127.0.0.1/32" in proxied
    assert "/metrics closed (set metrics_key)" in proxied


async def test_serve_logs_what_is_public_in_one_line(tmp_path: Any) -> None:
    process = Process(tmp_path, "[ui]\npublic = true\n")
    await process.start()
    try:
        lines = [ln for ln in process.log.read_text().splitlines() if "exposure on" in ln]
        assert len(lines) == 1 and "status page public read-only (no ping URLs)" in lines[0]
    finally:
        process.stop()
