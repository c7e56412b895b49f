"""Two bot processes (`python -m bot serve`) on one PostgreSQL database, as behind a load balancer.

One person's messages reach both processes alternately, while the previous one is still being handled,
some re-sent by "WeChat" to the other process: every message is handled exactly once and in order; the
WeChat access token is fetched once for both; an officer signed in to one process sees, live, the case a
message to the other process opened.

Each message's handling is made to take a known time: the NLU engine is Rasa pointed at a server that
answers only after the bot's Rasa budget, so every message spends that budget (under the user's lock) and
is then understood by the built-in engine, with the usual answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.settings import REPO_ROOT, Settings
from tests import databases
from tests.conftest import AES_KEY, APP_ID, TOKEN
from tests.fakes.rasa import SlowRasa
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import Reply, WeChatSender, text
from tests.integration.bots import BotProcess, free_port

pytestmark = [pytest.mark.databases, pytest.mark.parametrize("backend", ["postgresql"], indirect=True)]

RASA_BUDGET = 0.25  # seconds each message spends in the (too slow) Rasa engine
# A conversation in which every answer depends on the one before: a "did you mean" list, a numbered
# choice from it, then two misses in a row (only the second offers a person).
CYCLE = [("我想问一下证件", "did_you_mean", "请回复数字"),
         ("2", "faq:labor_dispute", "欠薪"),
         ("今天股票涨了吗", "fallback", "抱歉，这个问题我帮不上忙"),
         ("推荐个餐厅", "fallback", "看来我没能理解您的意思")]
ROUNDS = 3
PERSON = "oTwoProcesses"
FIRST_ID = 8_200_000


@pytest.fixture
async def slow_rasa() -> AsyncIterator[SlowRasa]:
    rasa = SlowRasa(delay=3.0)  # past every budget used here
    await rasa.start()
    yield rasa
    await rasa.close()


@pytest.fixture
async def pair(request: pytest.FixtureRequest, settings: Settings, slow_rasa: SlowRasa,
               tmp_path: Path) -> AsyncIterator[list[BotProcess]]:
    """Two bot processes on the test's database; each message spends ``RASA_BUDGET`` seconds in the classifier
    (a test may ask for another budget with ``@pytest.mark.rasa_budget(seconds)``)."""
    marker = request.node.get_closest_marker("rasa_budget")
    budget = marker.args[0] if marker else RASA_BUDGET
    bots = [BotProcess(settings, free_port(), tmp_path / f"bot{n}.log", NLU_ENGINE="rasa", RASA_URL=slow_rasa.url,
                       RASA_TIMEOUT=str(budget)) for n in range(2)]
    try:
        await asyncio.gather(*(bot.start() for bot in bots))
        yield bots
    finally:
        for bot in bots:
            bot.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_interleaved_messages_of_one_person_are_handled_once_and_in_order(
        pair: list[BotProcess], settings: Settings, fake_api: FakeWeChatAPI, slow_rasa: SlowRasa,
        http: aiohttp.ClientSession) -> None:
    senders = [WeChatSender(bot.url, TOKEN, APP_ID, AES_KEY, http) for bot in pair]
    script = CYCLE * ROUNDS
    messages = [text(PERSON, said, msg_id=FIRST_ID + i) for i, (said, _, _) in enumerate(script)]
    responses: dict[int, list[Reply]] = defaultdict(list)

    async def post(sender: WeChatSender, index: int) -> None:
        responses[index].append(await sender.post(messages[index], timeout=8))

    fake_api.token_delay = 0.3  # a slow token fetch: both processes need one at about the same time below
    tasks = []
    for index in range(len(messages)):
        here, there = senders[index % 2], senders[(index + 1) % 2]
        tasks.append(asyncio.create_task(post(here, index)))
        # The next message goes out as soon as this one is stored, so it arrives while this one is being
        # handled; the order of arrival is the order of storage.
        await _until(lambda: bool(_rows(settings, "SELECT 1 FROM messages WHERE channel_key=?",
                                        f"m:{FIRST_ID + index}")))
        if index % 3 == 1:  # WeChat re-sends it, and the load balancer picks the other process
            tasks.append(asyncio.create_task(post(there, index)))
    # Meanwhile two other people in danger, one on each process: their follow-ups go through the outbox
    # of whichever process, and need the access token.
    tasks += [asyncio.create_task(senders[n].post(text(f"oDanger{n}", "救命 我被绑架了 在曼谷"), timeout=8))
              for n in range(2)]
    await asyncio.gather(*tasks)
    await _drain(settings)

    inbound = _rows(settings, "SELECT id, channel_key, status, handler, created_at, answered_at FROM messages "
                              "WHERE direction='in' AND user_id=(SELECT id FROM users WHERE openid=?) ORDER BY id",
                    PERSON)
    assert [row[1] for row in inbound] == [f"m:{FIRST_ID + i}" for i in range(len(script))], \
        "each message stored once, in the order sent"
    assert {row[2] for row in inbound} == {"answered"}
    assert [row[3] for row in inbound] == [handler for _, handler, _ in script], \
        "every answer followed from the one before: handled in order"
    created: list[datetime] = [row[4] for row in inbound]
    answered: list[datetime] = [row[5] for row in inbound]
    assert answered == sorted(answered)
    overlapping = sum(created[i + 1] < answered[i] for i in range(len(inbound) - 1))
    assert overlapping >= len(inbound) // 2, "messages arrived while the one before was still being handled"
    assert slow_rasa.requests >= len(script), "each message spent its time in the slow engine"

    replies = _rows(settings, "SELECT reply_to_id, seq, id, text, delivery FROM messages WHERE direction='out' "
                              "AND reply_to_id IN (SELECT id FROM messages WHERE channel_key LIKE 'm:82%') "
                              "ORDER BY id")
    assert len({(r[0], r[1]) for r in replies}) == len(replies), "no message was handled twice"
    assert [r[0] for r in replies] == sorted(r[0] for r in replies), "replies were saved in order"
    first_reply = {r[0]: r for r in replies if r[1] == 0}
    for index, (row, (_, _, expected)) in enumerate(zip(inbound, script)):
        reply = first_reply[row[0]]
        assert expected in reply[3], (index, reply[3])
        got = [r.text for r in responses[index]]
        if reply[4] == "passive":
            assert reply[3] in got and set(got) <= {reply[3], None}, (index, got)
        else:
            assert set(got) == {None}, (index, got)
    conversation = _rows(settings, "SELECT c.state, c.context FROM conversations c JOIN users u ON u.id=c.user_id "
                                   "WHERE u.openid=?", PERSON)
    assert conversation[0][0] == "idle" and json.loads(conversation[0][1]) == {"fallbacks": 2}

    outbox = _rows(settings, "SELECT o.openid, m.text FROM outbox o JOIN messages m ON m.id=o.message_id "
                             "WHERE o.status='sent'")
    assert sorted((s.openid, s.text) for s in fake_api.sent) == sorted(outbox), "each outbox row sent exactly once"
    assert {openid for openid, _ in outbox} >= {"oDanger0", "oDanger1"}
    assert fake_api.token_requests == 1, "one token fetch for both processes"


@pytest.mark.rasa_budget(1.5)  # time enough to kill the process while it handles the first message
async def test_a_message_left_by_a_killed_process_is_answered_before_the_next_one(
        pair: list[BotProcess], settings: Settings, fake_api: FakeWeChatAPI, http: aiohttp.ClientSession) -> None:
    a, b = pair
    person = "oAfterCrash"
    first = asyncio.create_task(WeChatSender(a.url, TOKEN, APP_ID, AES_KEY, http).post(
        text(person, "我想问一下证件", msg_id=FIRST_ID + 900), timeout=8))
    await _until(lambda: bool(_rows(settings, "SELECT 1 FROM messages WHERE channel_key=?", f"m:{FIRST_ID + 900}")))
    a.kill()  # mid-handling (it spends 1.5 s in the classifier): the message stays leased by a dead process
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        await first
    # The next message reaches the other process; the first one's lease only looks dead once the killed
    # process misses its heartbeats (6 s), so the answer to this one comes through the outbox.
    second = await WeChatSender(b.url, TOKEN, APP_ID, AES_KEY, http).post(text(person, "2", msg_id=FIRST_ID + 901),
                                                                          timeout=8)
    assert second.status == 200
    await _drain(settings)
    handled = _rows(settings, "SELECT m.handler, m.answered_at FROM messages m JOIN users u ON u.id=m.user_id "
                              "WHERE u.openid=? AND m.direction='in' ORDER BY m.id", person)
    assert [h for h, _ in handled] == ["did_you_mean", "faq:labor_dispute"], "the dead process's message went first"
    assert handled[0][1] < handled[1][1]
    texts = fake_api.texts_for(person) + ([second.text] if second.text else [])
    assert len(texts) == 2 and "请回复数字" in texts[0] and "欠薪" in texts[1], texts


async def test_an_officer_on_one_process_sees_a_case_opened_on_the_other_live(
        pair: list[BotProcess], settings: Settings, http: aiohttp.ClientSession) -> None:
    added = subprocess.run([sys.executable, "-m", "bot", "--log-level", "WARNING", "users", "add", "olive", "--role",
                            "officer", "--password-stdin"], input="olive-password\n", capture_output=True, text=True,
                           cwd=REPO_ROOT, env={"BOT_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"})
    assert added.returncode == 0, added.stderr
    a, b = pair
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as officer:
        async with officer.get(f"{b.url}/console/login") as r:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert csrf
        async with officer.post(f"{b.url}/console/login", allow_redirects=False,
                                data={"name": "olive", "password": "olive-password", "csrf": csrf.group(1)}) as r:
            assert r.status == 303
        async with officer.get(f"{b.url}/console/events", timeout=aiohttp.ClientTimeout(total=20)) as stream:
            first = await _next_queue_event(stream)
            assert first["items"] == []
            reply = await WeChatSender(a.url, TOKEN, APP_ID, AES_KEY, http).post(
                text("oSeenElsewhere", "救命 我被绑架了 在曼谷"))
            assert reply.status == 200 and reply.text
            update = await asyncio.wait_for(_next_queue_event(stream), timeout=10)
    assert [(i["openid"], i["priority"], i["reason"]) for i in update["items"]] == [
        ("oSeenElsewhere", 1, "emergency_kidnap")]


async def _next_queue_event(stream: aiohttp.ClientResponse) -> Any:
    """The next ``event: queue`` of the console's server-sent events (keep-alive comments skipped)."""
    event = ""
    while True:
        line = (await stream.content.readline()).decode()
        if not line:
            raise AssertionError("the event stream ended")
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "queue":
            return json.loads(line.split(":", 1)[1])


def _rows(settings: Settings, sql: str, *args: object) -> list[tuple[Any, ...]]:
    return databases.rows(settings.database_url, sql, *args)


async def _until(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def _drain(settings: Settings, timeout: float = 30.0) -> None:
    """Until every message is answered and the outbox has sent everything."""
    for _ in range(int(timeout / 0.1)):
        waiting = _rows(settings, "SELECT (SELECT COUNT(*) FROM outbox WHERE status IN ('pending','sending')) + "
                                  "(SELECT COUNT(*) FROM messages WHERE direction='in' AND status='received')")
        if waiting == [(0,)]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("messages left unanswered or unsent")
