"""Crash test: `kill -9` the bot under load, restart it on the same database, re-send every message as
WeChat would. Every message is answered, none twice, and pending outbox messages go out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.settings import Settings
from tests import databases
from tests.conftest import AES_KEY, APP_ID, TOKEN
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import WeChatSender, text
from tests.integration.bots import BotProcess, free_port

pytestmark = pytest.mark.databases

MESSAGES = 240
CONCURRENCY = 16
TEXTS = ["我在迪拜被警察抓了", "护照在曼谷丢了怎么办", "你好", "转人工", "我朋友在西港联系不上了", "谢谢",
         "Is that call from 12308 real?", "今天天气怎么样"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_kill_9_under_load_loses_and_repeats_nothing(settings: Settings, fake_api: FakeWeChatAPI,
                                                           tmp_path: Path, http: aiohttp.ClientSession) -> None:
    port = free_port()
    bot = BotProcess(settings, port, tmp_path / "bot.log")
    await bot.start()
    sender = WeChatSender(bot.url, TOKEN, APP_ID, AES_KEY, http)
    messages = [text(f"oCrash{i % 40:02d}", TEXTS[i % len(TEXTS)], msg_id=9_100_000 + i) for i in range(MESSAGES)]
    passive: Counter[int] = Counter()

    async def deliver(index: int) -> None:
        try:
            reply = await sender.post(messages[index], timeout=6)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return  # the process died under this request: WeChat will re-send it
        if reply.status == 200 and reply.text:
            passive[index] += 1

    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def limited(index: int) -> None:
        async with semaphore:
            await deliver(index)

    first_wave = [asyncio.create_task(limited(i)) for i in range(MESSAGES)]
    await asyncio.sleep(0.8)
    bot.kill()  # mid-load, no goodbye
    await asyncio.gather(*first_wave)
    try:
        await bot.start()  # same database
        # WeChat re-sends what it did not get an answer for; re-sending everything is the harder test.
        second_wave = [asyncio.create_task(limited(i)) for i in range(MESSAGES)]
        await asyncio.gather(*second_wave)
        await _drain(settings, fake_api)
    finally:
        bot.stop()

    rows = _rows(settings, "SELECT id, channel_key, status FROM messages WHERE direction='in'")
    assert len(rows) == MESSAGES, "every message stored exactly once"
    assert {status for _, _, status in rows} == {"answered"}, "every message answered"
    replies = _rows(settings, "SELECT reply_to_id, seq, COUNT(*) FROM messages WHERE direction='out' "
                              "AND reply_to_id IS NOT NULL GROUP BY reply_to_id, seq HAVING COUNT(*) > 1")
    assert replies == [], "no message was handled twice"
    sends = Counter((s.openid, s.text) for s in fake_api.sent)
    outbox = _rows(settings, "SELECT message_id, COUNT(*) FROM outbox GROUP BY message_id HAVING COUNT(*) > 1")
    assert outbox == [], "no reply queued twice"
    assert _rows(settings, "SELECT COUNT(*) FROM outbox WHERE status IN ('pending','sending')") == [(0,)]
    index = {f"m:{9_100_000 + i}": i for i in range(MESSAGES)}  # channel key -> position in `messages`
    unanswered = [index[key] for mid, key, _ in rows
                  if not passive[index[key]] and not _rows(settings, "SELECT 1 FROM messages m JOIN outbox o "
                                                                     "ON o.message_id=m.id WHERE m.reply_to_id=? "
                                                                     "AND o.status='sent'", mid)]
    assert not unanswered, f"messages answered neither passively nor through the outbox: {unanswered[:5]}"
    assert max(sends.values(), default=1) <= MESSAGES  # sanity: the fake saw sends


async def _drain(settings: Settings, fake_api: FakeWeChatAPI, timeout: float = 40.0) -> None:
    """Until every message is answered (re-sends, or the recovery loop once the dead process's leases
    are seen as dead) and the outbox has sent everything."""
    for _ in range(int(timeout / 0.2)):
        waiting = _rows(settings, "SELECT (SELECT COUNT(*) FROM outbox WHERE status IN ('pending','sending')) + "
                                  "(SELECT COUNT(*) FROM messages WHERE direction='in' AND status='received')")
        if waiting == [(0,)]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("messages left unanswered or unsent")


def _rows(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    return databases.rows(settings.database_url, sql, *args)


async def test_a_message_a_dead_process_never_answered_is_answered_through_the_outbox(
        settings: Settings, fake_api: FakeWeChatAPI, start_bot: Any) -> None:
    """What a process killed just after recording a message leaves behind (the row, its lapsed lease, no answer),
    with no re-send from WeChat: the recovery loop of the next process to start answers it."""
    from datetime import timedelta

    from bot.storage.db import make_engine, migrate
    from bot.storage.runner import make_runner
    from bot.storage.store import Store
    from bot.wechat.messages import parse_inbound

    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    runner = await make_runner(settings.database_url, engine)
    try:
        gone = Store(runner, engine.dialect.name, instance="gone")
        recorded = await gone.record_inbound(parse_inbound(text("oOrphan", "护照丢了怎么办", msg_id=9_300_000)),
                                             timedelta(0))
    finally:
        await runner.close()
        await engine.dispose()
    await start_bot()
    await asyncio.wait_for(fake_api.wait_for_sent(1), 30)
    assert [s.openid for s in fake_api.sent] == ["oOrphan"] and "护照" in fake_api.sent[0].text
    assert _rows(settings, "SELECT status FROM messages WHERE id=?", recorded.message_id) == [("answered",)]
