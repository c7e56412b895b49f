"""Dedup, the time budget, the outbox and the customer-service quota, through the real webhook."""

from __future__ import annotations

import pytest

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from handlers.base import Outcome, Turn
from handlers.router import Brain
from handlers.services import Services
from tests import databases
from tests.conftest import Running, StartBot
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.databases


class ScriptedBrain(Brain):
    """A brain whose answers take ``delay`` seconds and may be several messages (handlers are tested elsewhere)."""

    def __init__(self, services: Services, delay: float, replies: list[str]) -> None:
        super().__init__(services)
        self.delay = delay
        self.replies = replies
        self.calls = 0

    async def respond(self, turn: Turn) -> Outcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return Outcome([f"{r}（{turn.text}）" for r in self.replies], handler="scripted")


def scripted(delay: float, *replies: str) -> Any:
    brains: list[ScriptedBrain] = []

    async def factory(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Brain:
        brain = ScriptedBrain(await Services.load(settings, sessions), delay, list(replies) or ["收到"])
        brains.append(brain)
        return brain
    factory.brains = brains  # type: ignore[attr-defined]
    return factory


async def test_three_concurrent_deliveries_are_handled_once(start_bot: StartBot) -> None:
    factory = scripted(0.3, "答复")
    bot = await start_bot(brain_factory=factory)
    xml = text("oDup", "护照丢了", msg_id=424242)
    replies = await asyncio.gather(*(bot.wechat.post(xml) for _ in range(3)))
    assert [r.status for r in replies] == [200, 200, 200]
    assert {r.text for r in replies} == {"答复（护照丢了）"}
    assert factory.brains[0].calls == 1
    assert bot.count("messages", "direction='in'") == 1
    assert bot.count("messages", "direction='out'") == 1


async def test_retry_after_answer_returns_the_same_reply(start_bot: StartBot) -> None:
    factory = scripted(0.0, "答复")
    bot = await start_bot(brain_factory=factory)
    xml = text("oDup2", "你好", msg_id=5151)
    first = await bot.wechat.post(xml)
    second = await bot.wechat.post(xml)
    assert first.text == second.text == "答复（你好）"
    assert factory.brains[0].calls == 1


async def test_slow_answer_goes_through_outbox(start_bot: StartBot, settings: Settings,
                                               fake_api: FakeWeChatAPI) -> None:
    factory = scripted(1.2, "慢答复")
    bot = await start_bot(settings.replace(reply_budget=0.5), brain_factory=factory)
    reply = await bot.wechat.post(text("oSlow", "在吗"))
    assert reply.body == "success"
    sent = await fake_api.wait_for_sent(1)
    assert sent[0].openid == "oSlow" and sent[0].text == "慢答复（在吗）"
    assert bot.rows("SELECT delivery FROM messages WHERE direction='out'") == [("outbox",)]


async def test_retry_while_still_working_gets_the_answer_or_success(start_bot: StartBot, settings: Settings,
                                                                   fake_api: FakeWeChatAPI) -> None:
    factory = scripted(0.8, "答复")
    bot = await start_bot(settings.replace(reply_budget=0.5), brain_factory=factory)
    xml = text("oRetry", "hello", msg_id=777)
    first = await bot.wechat.post(xml)
    second = await bot.wechat.post(xml)  # WeChat's re-send while the first is still being worked on
    assert first.body == "success"
    assert second.text == "答复（hello）" or second.body == "success"
    await asyncio.sleep(0.6)
    total = len(fake_api.texts_for("oRetry")) + (1 if second.text else 0)
    assert total == 1, "answered exactly once, passively or through the outbox"
    assert factory.brains[0].calls == 1


async def test_extra_replies_go_through_outbox_in_order(start_bot: StartBot, fake_api: FakeWeChatAPI) -> None:
    bot = await start_bot(brain_factory=scripted(0.0, "第一", "第二", "第三"))
    reply = await bot.wechat.post(text("oMany", "救命"))
    assert reply.text == "第一（救命）"
    await fake_api.wait_for_sent(2)
    assert fake_api.texts_for("oMany") == ["第二（救命）", "第三（救命）"]


async def test_45015_outside_window_is_recorded_as_failed(bot: Running, fake_api: FakeWeChatAPI) -> None:
    await bot.wechat.post(text("oWin", "你好"))
    fake_api.errors_by_openid["oWin"] = {"errcode": 45015, "errmsg": "response out of time limit"}
    await enqueue(bot, "oWin", "值班人员的回复")
    row = await wait_outbox_final(bot)
    assert row[0] == "failed" and row[1] == 45015 and "write again" in row[2]


async def test_45047_over_quota_is_recorded_as_failed(bot: Running, fake_api: FakeWeChatAPI) -> None:
    await bot.wechat.post(text("oQuota", "你好"))
    fake_api.errors_by_openid["oQuota"] = {"errcode": 45047, "errmsg": "out of response count limit"}
    await enqueue(bot, "oQuota", "回复")
    row = await wait_outbox_final(bot)
    assert row[:2] == ("failed", 45047)


async def test_local_quota_never_sends_a_sixth_message(bot: Running, fake_api: FakeWeChatAPI) -> None:
    await bot.wechat.post(text("oFive", "你好"))
    for i in range(6):
        await enqueue(bot, "oFive", f"回复{i}")
    await fake_api.wait_for_sent(5)
    await asyncio.sleep(0.3)
    assert len(fake_api.texts_for("oFive")) == 5
    failed = bot.rows("SELECT error_code FROM outbox WHERE status='failed'")
    assert failed == [(45047,)]


async def test_transient_errors_are_retried(bot: Running, fake_api: FakeWeChatAPI) -> None:
    await bot.wechat.post(text("oBusy", "你好"))
    fake_api.fail_next(-1, "system busy")
    await enqueue(bot, "oBusy", "稍后送达")
    await fake_api.wait_for_sent(1, timeout=10)
    assert fake_api.texts_for("oBusy") == ["稍后送达"]
    assert (await wait_outbox_final(bot))[0] == "sent"
    assert bot.rows("SELECT attempts FROM outbox") == [(2,)]


async def test_a_persons_later_messages_wait_for_their_retry_and_keep_their_order(bot: Running,
                                                                                 fake_api: FakeWeChatAPI) -> None:
    await bot.wechat.post(text("oOrder", "你好"))
    fake_api.fail_next(-1, "system busy")
    for line in ("一", "二", "三"):
        await enqueue(bot, "oOrder", line)
    await fake_api.wait_for_sent(3, timeout=10)
    assert fake_api.texts_for("oOrder") == ["一", "二", "三"]
    for _ in range(100):
        if bot.count("outbox", "status = 'sent'") == 3:
            break
        await asyncio.sleep(0.05)
    assert bot.rows("SELECT attempts FROM outbox ORDER BY id") == [(2,), (1,), (1,)]


async def test_pending_outbox_rows_are_sent_after_restart(start_bot: StartBot, settings: Settings,
                                                          fake_api: FakeWeChatAPI) -> None:
    first = await start_bot()
    await first.wechat.post(text("oRestart", "你好"))
    fake_api.http_status = 502  # WeChat unreachable: the row stays pending
    await enqueue(first, "oRestart", "重启后送达")
    await asyncio.sleep(0.3)
    await first.server.close()
    assert first.count("outbox", "status IN ('pending','sending')") == 1
    fake_api.http_status = 200
    second = await start_bot()
    # The first attempt scheduled a retry a second later; the new process picks it up.
    await fake_api.wait_for_sent(1, timeout=10)
    assert fake_api.texts_for("oRestart") == ["重启后送达"]
    assert (await wait_outbox_final(second))[0] == "sent"


async def test_other_peoples_retries_never_hold_back_a_new_message(bot: Running, fake_api: FakeWeChatAPI) -> None:
    """After an outage of WeChat's API many people's messages wait for a retry; each person's later messages wait
    behind their own, never behind anyone else's (there were once 500 such rows enough to hide every newer one)."""
    waiting = 600
    databases.execute(bot.settings.database_url, f"""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {waiting})
        INSERT INTO users (openid, first_seen, last_seen, subscribed, language, cs_quota_left)
        SELECT 'oWait' || i, '2026-01-01 00:00:00', '2026-01-01 00:00:00', TRUE, 'zh', 5 FROM n""")
    databases.execute(bot.settings.database_url, """
        INSERT INTO outbox (user_id, openid, payload, status, attempts, next_attempt_at, created_at)
        SELECT id, openid, '{"msgtype": "text", "text": {"content": "retry later"}}', 'pending', 3,
               '2099-01-01 00:00:00', '2026-01-01 00:00:00' FROM users WHERE openid LIKE 'oWait%' ORDER BY id""")
    assert bot.count("outbox", "status = 'pending'") == waiting
    await bot.wechat.post(text("oFresh", "你好"))
    await enqueue(bot, "oFresh", "值班人员：我们收到了")
    await fake_api.wait_for_sent(1, timeout=5)
    assert fake_api.texts_for("oFresh") == ["值班人员：我们收到了"]
    assert bot.count("outbox", "status = 'pending'") == waiting, "nobody else's retry was sent early"


async def test_a_slow_answer_from_wechat_holds_back_nobody_else(bot: Running, fake_api: FakeWeChatAPI) -> None:
    """WeChat takes 3 s to answer one send: other people's messages go meanwhile, that person's next one after it."""
    await bot.wechat.post(text("oSlow", "你好"))
    await bot.wechat.post(text("oQuick", "你好"))
    fake_api.delay_by_openid["oSlow"] = 3.0
    await enqueue(bot, "oSlow", "第一条")
    await enqueue(bot, "oSlow", "第二条")
    await asyncio.sleep(0.2)  # the slow send is under way
    await enqueue(bot, "oQuick", "很快送达")
    await fake_api.wait_for_sent(1, timeout=1.5)
    assert [s.openid for s in fake_api.sent] == ["oQuick"]
    await fake_api.wait_for_sent(3, timeout=10)
    assert fake_api.texts_for("oSlow") == ["第一条", "第二条"]
    for _ in range(100):
        if bot.count("outbox", "status = 'sent'") == 3:
            break
        await asyncio.sleep(0.05)
    assert bot.rows("SELECT status, attempts FROM outbox ORDER BY id") == [("sent", 1)] * 3


async def enqueue(bot: Running, openid: str, message: str) -> int:
    from bot.app import OUTBOX, STORE

    user_id = bot.rows("SELECT id FROM users WHERE openid=?", openid)[0][0]
    message_id = await bot.app[STORE].enqueue(user_id=user_id, openid=openid, text=message, sender="officer")
    bot.app[OUTBOX].wake()
    return message_id


async def wait_outbox_final(bot: Running, timeout: float = 5.0) -> tuple[Any, ...]:
    for _ in range(int(timeout / 0.05)):
        rows = bot.rows("SELECT status, error_code, error FROM outbox WHERE status IN ('sent','failed')")
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError("outbox row never reached a final state")
