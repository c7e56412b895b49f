"""A change ops staff publish in one bot process answers the very next message in another process
that shares the database (a real `python -m bot serve`), without a restart; drafts never do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.settings import Settings
from tests.conftest import AES_KEY, APP_ID, TOKEN, StartBot
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import WeChatSender, text
from tests.handlers.support import first_line, kb
from tests.integration.test_crash import BotProcess, free_port
from tests.knowledge.test_editor import call, ops_token

pytestmark = pytest.mark.databases


@pytest.fixture
async def other_process(settings: Settings, tmp_path: Path) -> AsyncIterator[BotProcess]:
    process = BotProcess(settings, free_port(), tmp_path / "other.log")
    await process.start()
    yield process
    process.stop()


async def test_publish_reaches_the_next_message_in_another_process(start_bot: StartBot, fake_api: FakeWeChatAPI,
                                                                   other_process: BotProcess) -> None:
    editing = await start_bot()  # the process the ops user is connected to
    token = await ops_token(editing)
    original = first_line(kb("hotline")["answer"]["zh"])
    async with aiohttp.ClientSession() as http:
        other = WeChatSender(other_process.url, TOKEN, APP_ID, AES_KEY, http)
        msg_ids = iter(range(7_700_000, 7_700_100))

        async def ask() -> str:
            reply = await other.post(text("oOtherProcess", "12308是什么电话", msg_id=next(msg_ids)))
            assert reply.status == 200 and reply.text
            return reply.text

        assert (await ask()).startswith(original)
        status, entry = await call(editing, "GET", "/api/v1/faq/hotline", token)
        changed = {**entry["latest"], "answer": {**entry["latest"]["answer"],
                                                 "zh": "【已更新】12308 全天24小时有人接听。\n\n" + entry["latest"]["answer"]["zh"]}}
        status, _ = await call(editing, "PUT", "/api/v1/faq/hotline", token, changed)
        assert status == 200
        assert (await ask()).startswith(original), "the draft is not served by any process"

        status, _ = await call(editing, "POST", "/api/v1/faq/hotline/publish", token, {})
        assert status == 200
        assert (await ask()).startswith("【已更新】12308 全天24小时有人接听。"), "the very next message, no restart"

        status, _ = await call(editing, "POST", "/api/v1/faq/hotline/rollback", token, {"version": 1})
        assert status == 200
        assert (await ask()).startswith(original)
