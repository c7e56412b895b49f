"""The console in a real headless Chromium (Debian's): live queue, claim, reply, delivery, close, roles, escaping."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.api import ACCOUNTS
from tests.conftest import Running
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import text

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("LINGBAO_SCREENSHOTS", "")) if os.environ.get("LINGBAO_SCREENSHOTS") else None
pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("LINGBAO_REQUIRE_BROWSER") == "1":
            pytest.fail("Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        yield instance
        await instance.close()


async def login(browser: Any, bot: Running, name: str, password: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    await page.goto(f"{bot.wechat.base}/console/")
    assert page.url.endswith("/console/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    return page


async def test_live_p1_claim_reply_delivered_close(bot: Running, browser: Any, fake_api: FakeWeChatAPI) -> None:
    await bot.app[ACCOUNTS].add("alice", "officer", "alice-password")
    page = await login(browser, bot, "alice", "alice-password")
    await page.wait_for_selector("#queue")
    assert await page.locator("#queue tr.empty").count() == 1

    # A priority-1 case arrives while the page is open: it must appear without a reload, with the alarm.
    await bot.wechat.post(text("oBrowser", "救命！我被绑架了，在马尼拉 <script>alert(1)</script>"))
    row = page.locator("#queue tr.p1")
    await row.wait_for(timeout=10000)
    await page.locator("#alert").wait_for(state="visible", timeout=5000)
    assert "P1" in await page.locator("#alert").inner_text()
    assert "<script>alert(1)</script>" in await row.locator(".said").inner_text()
    if SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "console-queue.png"))

    await row.locator("a").click()
    await page.click("form[action$='/claim'] button")
    await page.fill("#reply textarea", "您好，我是值班领事，请告诉我您是否安全。")
    await page.click("#reply button[type=submit]")
    await fake_api.wait_for_sent(3)
    assert any("我是值班领事" in t for t in fake_api.texts_for("oBrowser"))
    await page.locator("#transcript .sent").first.wait_for(timeout=10000)
    transcript = await page.locator("#transcript").inner_text()
    assert "<script>alert(1)</script>" in transcript, "user text shown as text"
    assert await page.locator("#transcript script").count() == 0
    # The person writes again while the officer has the case open: it shows up without a reload.
    await bot.wechat.post(text("oBrowser", "我现在安全了，在警察局"))
    await page.locator("#transcript .msg.user", has_text="我现在安全了").wait_for(timeout=10000)
    assert await page.locator("#stale").is_hidden()
    # The session ends (it expired, say): the page says it no longer updates rather than going quiet, and
    # says nothing once it updates again.
    cookies = await page.context.cookies()
    await page.context.clear_cookies()
    await page.locator("#stale").wait_for(state="visible", timeout=10000)
    await page.context.add_cookies(cookies)
    await page.locator("#stale").wait_for(state="hidden", timeout=10000)
    if SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "console-case.png"))

    await page.click("form[action$='/close'] button")
    await page.wait_for_selector("text=已结束")
    assert bot.rows("SELECT status, assignee FROM escalations") == [("closed", "alice")]


async def test_non_officer_cannot_open_the_queue(bot: Running, browser: Any) -> None:
    await bot.app[ACCOUNTS].add("olga", "ops", "olga-password")
    page = await login(browser, bot, "olga", "olga-password")
    response = await page.goto(f"{bot.wechat.base}/console/")
    assert response.status == 403
    assert "无权访问" in await page.inner_text("main")
    assert await page.locator("#queue").count() == 0


async def test_wrong_password_stays_on_login(bot: Running, browser: Any) -> None:
    await bot.app[ACCOUNTS].add("pete", "officer", "pete-password")
    page = await login(browser, bot, "pete", "not-the-password")
    assert "用户名或密码错误" in await page.inner_text("main")


async def test_the_queue_says_when_it_stops_updating(bot: Running, browser: Any) -> None:
    """Signed out elsewhere (or expired, or revoked), the open queue page says it no longer updates instead of
    silently showing a queue that may be missing a P1."""
    await bot.app[ACCOUNTS].add("quinn", "officer", "quinn-password")
    page = await login(browser, bot, "quinn", "quinn-password")
    await page.wait_for_selector("#queue")
    await bot.wechat.post(text("oQueue", "转人工"))
    await page.locator("#queue tr", has_text="转人工").wait_for(timeout=10000)
    assert await page.locator("#stale").is_hidden()

    csrf = await page.get_attribute("body", "data-csrf")
    response = await page.context.request.post(f"{bot.wechat.base}/console/logout", form={"csrf": csrf or ""})
    assert response.ok
    await page.locator("#stale").wait_for(state="visible", timeout=10000)
    await page.wait_for_timeout(4000)  # the browser's own reconnection is refused: it stays up
    assert await page.locator("#stale").is_visible()
    assert "实时更新已中断" in await page.locator("#stale").inner_text()
