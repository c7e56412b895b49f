"""The learning pages in a real headless Chromium: ops turn a group of unanswered questions into variants,
watch a retraining job's progress, and an officer cannot open them."""

from __future__ import annotations

from typing import Any

import pytest

from bot.api import ACCOUNTS
from bot.app import BRAIN
from tests.conftest import Running
from tests.console.test_console_browser import SCREENSHOTS, browser, login  # noqa: F401  (fixture)
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.browser

# What people wrote that the bot could not answer well, as ops staff would find it on a Monday.
ASKED = {
    "landlord": ["房东不退押金怎么办", "房东扣我押金不退", "租的房子到期了房东不退押金", "退租后房东一直拖着不还押金",
                 "房东不退我押金怎么办"],
    "luggage": ["航空公司把我行李弄丢了", "托运的行李到了目的地没找到 航空公司不管"],
    "tuition": ["留学生学费退不回来", "<b>学校</b>不给我退学费"],  # pasted with markup: shown as typed, never as HTML
}
NEXT_ASKER = "房东不肯退押金怎么办"


async def seed(bot: Running) -> None:
    for topic, questions in ASKED.items():
        for n, question in enumerate(questions):
            openid = f"o{topic}{n}"
            await bot.wechat.post(text(openid, question))
            await bot.wechat.post(text(openid, "好吧"))  # nobody picked an offered entry


async def test_ops_turn_a_group_into_question_variants(bot: Running, browser: Any) -> None:
    await seed(bot)
    await bot.app[ACCOUNTS].add("olga", "ops", "olga-password")
    page = await login(browser, bot, "olga", "olga-password")
    await page.goto(f"{bot.wechat.base}/console/unanswered")
    group = page.locator("section.group", has_text=ASKED["landlord"][0])
    await group.wait_for()
    assert await group.locator("ul.messages li").count() == len(ASKED["landlord"])
    assert (await group.locator(".count").inner_text()).startswith("5")
    pasted = page.locator("ul.messages .text", has_text="<b>学校</b>不给我退学费")
    assert await pasted.count() == 1, "user text is shown as text"
    assert await page.locator("ul.messages b").count() == 0
    if SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "console-unanswered.png"), full_page=True)

    await group.locator("select[name=slug]").select_option("consular_scope")
    await group.locator("button[value=variant]").click()
    await page.locator("p.ok[role=status]").wait_for()
    assert "已加为条目“consular_scope”的问法" in await page.locator("p.ok[role=status]").inner_text()
    assert await page.locator("section.group", has_text=ASKED["landlord"][0]).count() == 0
    assert await page.locator("section.group", has_text=ASKED["luggage"][0]).count() == 1

    await bot.app[BRAIN].services.kb.settled()  # the matcher learns the new variants in the background
    await bot.wechat.post(text("oNext", NEXT_ASKER))
    assert bot.rows("SELECT handler FROM messages WHERE text = ?", NEXT_ASKER) == [("faq:consular_scope",)]


async def test_retraining_progress_shows_without_reloading(bot: Running, browser: Any) -> None:
    await bot.app[ACCOUNTS].add("olga", "ops", "olga-password")
    page = await login(browser, bot, "olga", "olga-password")
    await page.goto(f"{bot.wechat.base}/console/nlu")
    assert "由 data/nlu/train 训练的内置模型" in await page.locator("#live-model").inner_text()
    await page.click("#retrain button")
    await page.locator("#jobs[data-running='1']").wait_for()
    row = page.locator("#jobs tr.job").first
    # The script fills in progress and stage as the job moves on (the page is not reloaded meanwhile)...
    await page.wait_for_function(
        "() => { const p = document.querySelector('#jobs[data-running=\"1\"] tr.job progress');"
        " return p && p.value > 10 && /%$/.test(document.querySelector('#jobs tr.job .pct').textContent); }",
        timeout=120000)
    # ...and reloads once it has finished, to show the results.
    await page.locator("#jobs[data-running='0']").wait_for(timeout=120000)
    assert await row.locator(".status").inner_text() == "线上使用中"
    assert "训练任务 #1" in await page.locator("#live-model").inner_text()
    assert await page.locator("#recall tr.emergency").count() == 7
    if SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "console-nlu.png"), full_page=True)


async def test_an_officer_cannot_open_the_learning_pages(bot: Running, browser: Any) -> None:
    await bot.app[ACCOUNTS].add("otto", "officer", "otto-password")
    page = await login(browser, bot, "otto", "otto-password")
    for path in ("/console/unanswered", "/console/nlu"):
        response = await page.goto(f"{bot.wechat.base}{path}")
        assert response.status == 403
        assert "无权访问" in await page.inner_text("main")
        assert await page.locator("section.group, #jobs").count() == 0
    nav = await page.inner_text("header nav")
    assert "未答问题" not in nav and "模型训练" not in nav
