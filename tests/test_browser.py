"""The web UI in a real browser: Debian's chromium driven by Playwright, against the real app.

The daemon runs in the test's event loop on a loopback port with a manual clock, so a check
goes down the moment the test moves time on. Screenshots land in tests/artifacts/ (git-ignored)
for a person to look at. Without chromium the tests skip, except in CI, where they must run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, cheap_hash

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery"
PRIVATE = "[ui]\npublic = false\n"

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # the test extra installs it; say so rather than fail to import
    async_playwright = None  # type: ignore[assignment]

if async_playwright is None or not shutil.which(CHROMIUM):
    reason = "needs playwright and Debian's chromium (apt-get install -y chromium)"
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        await chromium.close()


async def logged_in(daemon: Daemon, browser: Browser, **context: Any) -> Page:
    await daemon.store.set_password("admin", cheap_hash(PASSWORD), daemon.clock.now())
    page = await (await browser.new_context(**context)).new_page()
    page.set_default_timeout(10_000)
    await page.goto(str(daemon.client.make_url("/")))
    await expect(page).to_have_url(re.compile(r"/login\?next="))  # private: login first
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Checks")).to_be_visible()
    return page


def row(page: Page, name: str) -> Any:
    return page.locator("tbody#rows tr", has=page.get_by_role("link", name=name, exact=True))


async def test_a_person_creates_pings_and_pauses_a_check_without_reloading(
    start_daemon: Any, browser: Browser
) -> None:
    daemon = await start_daemon(PRIVATE)
    page = await logged_in(daemon, browser)
    await page.get_by_role("link", name="New check").click()
    await page.get_by_label("Name", exact=True).fill("Nightly backup")
    await page.get_by_label("Tags", exact=True).fill("backup prod")
    await page.get_by_label("Period", exact=True).fill("1m")
    await page.get_by_label("Grace", exact=True).fill("30s")
    await page.get_by_role("button", name="Create check").click()
    await expect(page.locator("h1")).to_contain_text("Nightly backup")
    uuid = page.url.rsplit("/", 1)[1]

    await page.get_by_role("link", name="All checks").click()
    await expect(row(page, "Nightly backup").locator(".status")).to_have_text("new")
    marker = await page.evaluate("window.notReloaded = true")
    assert marker is True
    response = await daemon.client.post(f"/ping/{uuid}", data=b"backup done: 42 files")
    assert response.status == 200
    await expect(row(page, "Nightly backup").locator(".status")).to_have_text("up")
    assert await page.evaluate("window.notReloaded") is True  # swapped in place, no reload

    await row(page, "Nightly backup").get_by_role("link", name="Nightly backup").click()
    await expect(page.get_by_text("backup done: 42 files")).to_be_visible()
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("h1 .status")).to_have_text("paused")
    await page.get_by_role("link", name="All checks").click()
    await expect(row(page, "Nightly backup").locator(".status")).to_have_text("paused")


async def test_a_person_watches_a_silent_check_go_down(start_daemon: Any, browser: Browser) -> None:
    daemon = await start_daemon(PRIVATE)
    quiet = await daemon.add("db dump", period=60.0, grace=10.0, tags=("db",))
    healthy = await daemon.add("web ping", period=3600.0, grace=60.0)
    await daemon.add(
        "weekly report", period=None, cron="0 3 * * 1", tz="Europe/Berlin", grace=3600.0
    )
    for check in (quiet, healthy):
        rid = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"
        await daemon.client.get(f"/ping/{check.uuid}/start?rid={rid}")
        await daemon.advance(3)
        await daemon.client.post(f"/ping/{check.uuid}?rid={rid}", data=b"ok")
    page = await logged_in(daemon, browser)
    await expect(row(page, "db dump").locator(".status")).to_have_text("up")

    await daemon.advance(65)  # past the period: late
    await expect(row(page, "db dump").locator(".status")).to_have_text("late")
    await daemon.advance(10)  # past the grace: down, and sorted first
    await expect(row(page, "db dump").locator(".status")).to_have_text("down")
    await expect(page.locator("tbody#rows tr").first).to_contain_text("db dump")
    await expect(page).to_have_title("(1 down) heartbeatd")
    await expect(page.locator("#live-status")).to_have_text("1 check is down")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    await row(page, "db dump").get_by_role("link", name="db dump").click()
    await expect(page.get_by_role("heading", name="Status changes")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "check.png"), full_page=True)


async def test_the_dashboard_is_a_list_of_cards_on_a_dark_phone(
    start_daemon: Any, browser: Browser
) -> None:
    daemon = await start_daemon(PRIVATE)
    check = await daemon.add("phone backup", period=300.0, grace=60.0, tags=("mobile",))
    await daemon.client.get(f"/ping/{check.uuid}")
    page = await logged_in(
        daemon, browser, viewport={"width": 390, "height": 844}, color_scheme="dark"
    )
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"  # prefers-color-scheme: dark
    card = row(page, "phone backup")
    await expect(card).to_be_visible()
    assert await card.evaluate("el => getComputedStyle(el).display") == "block"
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
