"""Faults around the bot, on SQLite and PostgreSQL: the NLU server slow or gone, WeChat's API unreachable, the
database busy. The person is still answered (within WeChat's 5 s, or later through the outbox), nothing is
lost, and WeChat never sees a 500."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.app import BRAIN
from bot.settings import Settings
from tests import databases
from tests.conftest import Running, StartBot
from tests.fakes.rasa import SlowRasa
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import Reply, text
from tests.handlers.support import HOTLINE_NUMBERS
from tests.integration.bots import free_port

pytestmark = pytest.mark.databases

EMERGENCY = "救命 我被绑架了 在曼谷"
WECHAT_WINDOW = 5.0


@pytest.fixture
async def slow_rasa() -> AsyncIterator[SlowRasa]:
    rasa = SlowRasa(delay=3.0)  # far past the bot's Rasa budget
    await rasa.start()
    yield rasa
    await rasa.close()


async def timed(bot: Running, openid: str, said: str) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = await bot.wechat.post(text(openid, said), timeout=10)
    return reply, time.monotonic() - started


@pytest.mark.parametrize("rasa", ["slow", "stopped"])
async def test_rasa_slow_or_stopped_the_builtin_engine_answers_within_5_s(
        start_bot: StartBot, settings: Settings, slow_rasa: SlowRasa, rasa: str) -> None:
    url = slow_rasa.url if rasa == "slow" else f"http://127.0.0.1:{free_port()}"  # nothing listens there
    bot = await start_bot(settings.replace(nlu_engine="rasa", rasa_url=url, rasa_timeout=0.8))
    emergency, took = await timed(bot, "oRasaFault", EMERGENCY)
    assert emergency.status == 200 and took < WECHAT_WINDOW
    assert emergency.text and all(number in emergency.text for number in HOTLINE_NUMBERS)
    question, took = await timed(bot, "oRasaFault2", "护照在曼谷丢了怎么办")
    assert question.status == 200 and took < WECHAT_WINDOW and question.text and "报案" in question.text
    assert bot.rows("SELECT intent FROM messages WHERE direction='in' ORDER BY id") == [
        ("emergency_kidnap",), ("faq",)]
    assert bot.app[BRAIN].services.nlu.stats["rasa_fallbacks"] == 2
    assert (slow_rasa.requests == 2) == (rasa == "slow")


async def test_wechat_api_unreachable_then_back_everything_is_delivered_later(
        bot: Running, fake_api: FakeWeChatAPI) -> None:
    await fake_api.go_offline()  # connections refused, the access token cannot be fetched either
    reply = await bot.wechat.post(text("oOffline", EMERGENCY))
    assert reply.status == 200 and reply.text, "the passive reply does not need WeChat's API"
    queued = bot.rows("SELECT m.text FROM outbox o JOIN messages m ON m.id=o.message_id ORDER BY o.id")
    assert queued, "the emergency's follow-up goes through the outbox"
    await _until(lambda: bot.count("outbox", "attempts >= 2 AND status='pending'") >= 1, timeout=8)
    assert bot.count("outbox", "status IN ('sent','failed')") == 0, "nothing sent, nothing given up"
    errors = {row[0] for row in bot.rows("SELECT error FROM outbox WHERE error IS NOT NULL")}
    assert errors and all("ClientConnectorError" in e or "fetching token" in e for e in errors), errors

    await fake_api.come_back()
    await fake_api.wait_for_sent(len(queued), timeout=15)
    await _until(lambda: bot.count("outbox", "status='sent'") == len(queued), timeout=5)
    assert fake_api.texts_for("oOffline") == [t for (t,) in queued], "each follow-up once, in order"
    assert bot.count("outbox", "status='failed'") == 0


async def test_database_busy_for_two_seconds_messages_still_answered(bot: Running, fake_api: FakeWeChatAPI) -> None:
    first = await bot.wechat.post(text("oBusy0", "你好"))  # warm up (model, knowledge base, connections)
    assert first.text
    url = bot.settings.database_url
    holding = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(url, 2.0, holding), daemon=True)
    holder.start()
    assert holding.wait(10), "could not take the write lock"
    started = time.monotonic()
    said = ["你好", EMERGENCY, "护照在曼谷丢了怎么办", "转人工", "谢谢", "签证逾期了怎么办"]
    results = await asyncio.gather(*(timed(bot, f"oBusy{i + 1}", line) for i, line in enumerate(said)))
    blocked_for = time.monotonic() - started
    holder.join()
    assert blocked_for > 1.5, "the messages really waited for the lock"
    assert [reply.status for reply, _ in results] == [200] * len(said), "never a 500"
    assert all(took < WECHAT_WINDOW for _, took in results), [took for _, took in results]
    await _until(lambda: bot.count("messages", "direction='in' AND status='received'") == 0
                 and bot.count("outbox", "status IN ('pending','sending')") == 0, timeout=15)
    assert bot.count("messages", "direction='in'") == len(said) + 1, "every message stored once"
    for i, (reply, _) in enumerate(results):
        openid = f"oBusy{i + 1}"
        answers = bot.rows("SELECT r.text, r.delivery FROM messages r JOIN messages m ON m.id=r.reply_to_id "
                           "JOIN users u ON u.id=m.user_id WHERE u.openid=? ORDER BY r.seq", openid)
        assert answers, f"{openid} was answered"
        if reply.text:
            assert reply.text == answers[0][0] and answers[0][1] == "passive"
        else:
            assert answers[0][0] in fake_api.texts_for(openid), "answered later through the outbox"


def _hold_write_lock(url: str, seconds: float, holding: threading.Event,
                     release: threading.Event | None = None) -> None:
    """Another client of the database keeps it busy for ``seconds`` (or until ``release``): SQLite's write lock,
    or an exclusive lock on PostgreSQL's messages table (reads go on, writes wait)."""
    release = release or threading.Event()
    if databases.is_postgres(url):
        async def hold() -> None:
            connection = await asyncpg.connect(make_url(url).set(drivername="postgresql")
                                               .render_as_string(hide_password=False))
            try:
                async with connection.transaction():
                    await connection.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
                    holding.set()
                    await asyncio.to_thread(release.wait, seconds)
            finally:
                await connection.close()

        asyncio.run(hold())
        return
    connection = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


async def _until(condition: object, timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_database_drops_every_connection_messages_still_answered(bot: Running) -> None:
    """PostgreSQL restarted or a proxy cut idle connections: the next messages are answered as usual."""
    for i in range(3):  # the pool's connections and the lock connection are open and idle now
        assert (await bot.wechat.post(text(f"oDropped{i}", "你好"))).text
    dropped = bot.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert len(dropped) >= 2 and all(ok for (ok,) in dropped)
    results = await asyncio.gather(*(timed(bot, f"oDropped{i}", line) for i, line in
                                     enumerate(["你好", EMERGENCY, "护照在曼谷丢了怎么办"])))
    assert [reply.status for reply, _ in results] == [200, 200, 200]
    assert all(took < WECHAT_WINDOW for _, took in results)
    assert all(reply.text and "系统暂时出了点问题" not in reply.text for reply, _ in results), \
        [reply.text for reply, _ in results]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_connection_lost_mid_request_is_retried_not_a_500(bot: Running) -> None:
    """The bot's connection dies while it records a message (here: it waits on a lock, and the server ends
    that backend): the webhook records it again on a fresh connection and answers."""
    assert (await bot.wechat.post(text("oCut", "你好"))).text
    url = bot.settings.database_url
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(url, 10.0, holding, release), daemon=True)
    holder.start()
    assert holding.wait(10)
    pending = asyncio.create_task(timed(bot, "oCut", "护照在曼谷丢了怎么办"))
    waiting: list[tuple[object, ...]] = []
    for _ in range(100):  # the bot's insert now waits for the lock
        waiting = bot.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
        if waiting:
            break
        await asyncio.sleep(0.02)
    assert waiting, "the bot never waited for the lock"
    bot.rows("SELECT pg_terminate_backend(?)", waiting[0][0])
    await asyncio.sleep(0.3)
    release.set()
    holder.join()
    reply, took = await pending
    assert reply.status == 200 and took < WECHAT_WINDOW
    assert reply.text and "报案" in reply.text, reply.text
    assert bot.count("messages", "direction='in'") == 2
