"""The knowledge-base editor in headless Chromium: an ops user edits and publishes an entry and the
WeChat simulator's next answer changes; an officer cannot reach the editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.api import ACCOUNTS
from bot.settings import Settings
from tests.conftest import Running, StartBot
from tests.console.test_console_browser import SCREENSHOTS, browser, login  # noqa: F401  (fixture)
from tests.handlers.support import first_line, kb

pytestmark = pytest.mark.browser


@pytest.fixture
async def demo(start_bot: StartBot, tmp_path: Path) -> Running:
    """The bot in demo mode (simulator page at /, stand-in WeChat API) on a database of this test's own."""
    settings = Settings.from_env({"BOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
                                  "BOT_VAR_DIR": str(tmp_path / "var")}, demo=True)
    return await start_bot(settings)


async def ask(page: Any, question: str) -> str:
    """Type into the simulator and return the bot's next (passive) reply."""
    before = await page.locator(".row:not(.me) .bubble").count()
    await page.fill("#text", question)
    await page.click("#send")
    reply = page.locator(".row:not(.me) .bubble").nth(before)
    await reply.wait_for(timeout=10000)
    return str(await reply.inner_text())


async def test_ops_edit_and_publish_changes_the_simulators_next_answer(demo: Running, browser: Any) -> None:
    original = first_line(kb("lost_passport")["answer"]["zh"])
    simulator = await browser.new_page(viewport={"width": 480, "height": 860})
    await simulator.goto(f"{demo.wechat.base}/")
    assert (await ask(simulator, "护照丢了怎么办")).startswith(original)

    await demo.app[ACCOUNTS].add("olga", "ops", "olga-password")
    page = await login(browser, demo, "olga", "olga-password")
    await page.wait_for_selector("#entries")
    assert page.url.endswith("/console/kb"), "ops land on the knowledge base"
    await page.fill("input[name=q]", "护照")
    await page.click(".search button")
    await page.click("#entries a[href='/console/kb/lost_passport']")

    answer = page.locator("textarea[name=answer_zh]")
    await answer.fill("【新】护照丢失请先在线预约补办，再按下面的步骤做。\n\n" + await answer.input_value())
    await page.fill("input[name=note]", "新的预约流程")
    await page.click("#entry-form button[type=submit]")
    await page.wait_for_selector("text=已保存为草稿")
    assert "【新】护照丢失请先在线预约补办" in await page.locator("#preview").inner_text()
    assert (await ask(simulator, "护照丢了怎么办")).startswith(original), "a draft does not reach citizens"
    if SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "console-kb-editor.png"), full_page=False)

    await page.click("form[action$='/publish'] button")
    await page.wait_for_selector("text=已发布")
    assert (await ask(simulator, "护照丢了怎么办")).startswith("【新】护照丢失请先在线预约补办")

    await page.click("#versions a[href*='diff']")
    assert "【新】护照丢失" in await page.locator("#diff .add").first.inner_text()


async def test_an_officer_cannot_reach_the_editor(demo: Running, browser: Any) -> None:
    await demo.app[ACCOUNTS].add("oscar", "officer", "oscar-password")
    page = await login(browser, demo, "oscar", "oscar-password")
    await page.wait_for_selector("#queue")
    assert await page.locator("nav a[href='/console/kb']").count() == 0
    for path in ("/console/kb", "/console/kb/lost_passport", "/console/directory/TH", "/console/alerts"):
        response = await page.goto(f"{demo.wechat.base}{path}")
        assert response.status == 403, path
        assert "无权访问" in await page.inner_text("main")
        assert await page.locator("#entry-form, #country-form, #alert-form").count() == 0
