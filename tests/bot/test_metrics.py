"""``GET /metrics``: messages by type and intent, webhook latency, NLU engine, queue and outbox figures."""

from __future__ import annotations

import pytest

from tests.conftest import Running
from tests.fakes.wechat_server import event, text

pytestmark = pytest.mark.databases


async def scrape(bot: Running) -> str:
    async with bot.wechat.http.get(f"{bot.wechat.base}/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        return await r.text()


async def test_metrics_after_some_traffic(bot: Running) -> None:
    await bot.wechat.post(text("oM", "你好"))
    await bot.wechat.post(text("oM2", "救命 我被绑架了 在马尼拉"))
    await bot.wechat.post(event("oM3", "subscribe"))
    await bot.wechat.post_raw(b"<xml>", bot.wechat.signed_params(encrypted="abc"))
    body = await scrape(bot)
    assert 'lingbao_messages_total{intent="greet",type="text"} 1.0' in body
    assert 'lingbao_messages_total{intent="emergency_kidnap",type="text"} 1.0' in body
    assert 'lingbao_messages_total{intent="",type="event:subscribe"} 1.0' in body
    assert 'lingbao_nlu_total{engine="builtin"} 2.0' in body
    assert 'lingbao_webhook_responses_total{status="200"} 3.0' in body
    assert 'lingbao_webhook_responses_total{status="400"} 1.0' in body
    assert "lingbao_webhook_seconds_bucket" in body
    assert 'lingbao_queue_waiting{priority="1"} 1.0' in body
    assert "lingbao_outbox_backlog" in body


async def test_metrics_carry_no_message_text(bot: Running) -> None:
    await bot.wechat.post(text("oSecret", "我的护照号是E12345678"))
    body = await scrape(bot)
    assert "E12345678" not in body and "oSecret" not in body
