"""The human queue through the real webhook and the JSON API, with a fake WeChat API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from bot.api import ACCOUNTS, QUEUE
from bot.settings import REPO_ROOT, Settings
from tests.conftest import Running
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.databases


async def staff(bot: Running, name: str, role: str, *, online: bool = True) -> str:
    accounts = bot.app[ACCOUNTS]
    who = await accounts.add(name, role, "a-long-password")
    if online:
        await accounts.set_presence(who, "online")
    return await accounts.create_token(name)


async def api(bot: Running, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with bot.wechat.http.request(method, f"{bot.wechat.base}{path}", json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_no_officer_online_tells_12308_at_once(bot: Running) -> None:
    reply = await bot.wechat.post(text("oAlone", "转人工"))
    assert "没有值班人员在线" in (reply.text or "") and "+86-10-65612308" in (reply.text or "")
    emergency = await bot.wechat.post(text("oAlone2", "救命 我被绑架了"))
    assert "没有值班人员在线" in (emergency.text or "") and "已为您通知值班人员" not in (emergency.text or "")
    assert bot.rows("SELECT status, priority FROM escalations ORDER BY id") == [("waiting", 3), ("waiting", 1)]


async def test_queue_order_claim_reply_close_and_rating(bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await staff(bot, "alice", "officer")
    first = await bot.wechat.post(text("oHuman", "我要找真人"))
    assert "您是下一位" in (first.text or "")
    later = await bot.wechat.post(text("oDanger", "救命 我被绑架了 在金边"))
    assert "前面还有" not in (later.text or "")  # priority 1 goes to the front
    assert "已为您通知值班人员" in (later.text or "") and "没有值班人员在线" not in (later.text or "")
    status, listing = await api(bot, "GET", "/api/v1/escalations?status=waiting", token)
    assert status == 200
    assert [(i["openid"], i["priority"]) for i in listing["items"]] == [("oDanger", 1), ("oHuman", 3)]
    assert listing["items"][0]["case"]["country"] == "KH"
    human = listing["items"][1]["id"]

    status, claimed = await api(bot, "POST", f"/api/v1/escalations/{human}/claim", token)
    assert status == 200 and claimed["status"] == "assigned" and claimed["assignee"] == "alice"
    status, _ = await api(bot, "POST", f"/api/v1/escalations/{human}/messages", token, {"text": "您好，我是值班领事。"})
    assert status == 201
    await fake_api.wait_for_sent(1)
    await _until(lambda: "您好，我是值班领事。" in fake_api.texts_for("oHuman"))

    quiet = await bot.wechat.post(text("oHuman", "我在东京机场，钱包丢了"))
    assert quiet.body == "success", "while an officer has the chat the bot stays quiet"
    status, transcript = await api(bot, "GET", f"/api/v1/escalations/{human}/messages", token)
    senders = [(m["sender"], m["text"]) for m in transcript["items"]]
    assert ("user", "我在东京机场，钱包丢了") in senders and ("officer", "您好，我是值班领事。") in senders
    officer_message = next(m for m in transcript["items"] if m["sender"] == "officer")
    assert officer_message["delivery"] == "sent"

    status, closed = await api(bot, "POST", f"/api/v1/escalations/{human}/close", token)
    assert status == 200 and closed["status"] == "closed"
    await _until(lambda: any("打分" in t for t in fake_api.texts_for("oHuman")))
    rated = await bot.wechat.post(text("oHuman", "5"))
    assert "谢谢" in (rated.text or "")
    assert bot.rows("SELECT rating FROM escalations WHERE id=?", human) == [(5,)]
    again = await bot.wechat.post(text("oHuman", "护照丢了怎么办"))
    assert again.text and "报案" in again.text, "after close the bot answers again"
    actions = {row[0] for row in bot.rows("SELECT action FROM audit_log WHERE actor='alice'")}
    assert {"claim", "reply", "view", "close"} <= actions


async def test_a_long_conversation_is_paged_back_from_the_latest(bot: Running) -> None:
    token = await staff(bot, "paula", "officer")
    await bot.wechat.post(text("oLong", "转人工"))  # the case; the bot answers
    said = [f"第{i}条" for i in range(1, 6)]
    for line in said:
        await bot.wechat.post(text("oLong", line))
    case = (await api(bot, "GET", "/api/v1/escalations", token))[1]["items"][0]["id"]
    everything = bot.rows("SELECT id FROM messages ORDER BY id")

    status, page = await api(bot, "GET", f"/api/v1/escalations/{case}/messages?limit=3", token)
    assert status == 200 and page["more"] is True
    assert [m["id"] for m in page["items"]] == [row[0] for row in everything[-3:]], "the latest three, oldest first"
    seen = page["items"]
    while page["more"]:
        status, page = await api(bot, "GET", f"/api/v1/escalations/{case}/messages?limit=3&before={seen[0]['id']}",
                                 token)
        assert status == 200
        seen = page["items"] + seen
    assert [m["id"] for m in seen] == [row[0] for row in everything], "paging back gives each message once"
    assert [m["text"] for m in seen if m["sender"] == "user"] == ["转人工", *said]
    status, whole = await api(bot, "GET", f"/api/v1/escalations/{case}/messages", token)
    assert whole["more"] is False and len(whole["items"]) == len(everything)

    for query in ("limit=0", "limit=1001", "limit=ten", "before=0", "before=-3", "before=1.5"):
        status, body = await api(bot, "GET", f"/api/v1/escalations/{case}/messages?{query}", token)
        assert status == 400 and body["error"], query


async def test_45015_is_shown_in_plain_words(bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await staff(bot, "bob", "officer")
    await bot.wechat.post(text("oLate", "转人工"))
    case = (await api(bot, "GET", "/api/v1/escalations", token))[1]["items"][0]["id"]
    await api(bot, "POST", f"/api/v1/escalations/{case}/claim", token)
    fake_api.errors_by_openid["oLate"] = {"errcode": 45015, "errmsg": "response out of time limit"}
    await api(bot, "POST", f"/api/v1/escalations/{case}/messages", token, {"text": "还在吗？"})
    await _until(lambda: bool(bot.rows("SELECT 1 FROM outbox o JOIN messages m ON m.id=o.message_id "
                                       "WHERE m.sender='officer' AND o.status='failed'")))
    items = (await api(bot, "GET", f"/api/v1/escalations/{case}/messages", token))[1]["items"]
    failed = [m for m in items if m["sender"] == "officer"][-1]
    assert failed["delivery"] == "failed" and failed["error_code"] == 45015
    assert "write again" in failed["error"]


async def test_emergency_in_an_open_case_raises_its_priority(bot: Running) -> None:
    await staff(bot, "carol", "officer")
    await bot.wechat.post(text("oRaise", "转人工"))
    await bot.wechat.post(text("oRaise", "有人拿刀抢劫我 在约翰内斯堡"))
    assert bot.rows("SELECT priority, reason FROM escalations") == [(1, "emergency_crime")]


async def test_transfer_to_a_colleague(bot: Running) -> None:
    alice = await staff(bot, "alice", "officer")
    dave = await staff(bot, "dave", "supervisor")
    await bot.wechat.post(text("oMove", "转人工"))
    case = (await api(bot, "GET", "/api/v1/escalations", alice))[1]["items"][0]["id"]
    await api(bot, "POST", f"/api/v1/escalations/{case}/claim", alice)
    status, moved = await api(bot, "POST", f"/api/v1/escalations/{case}/transfer", alice, {"to": "dave"})
    assert status == 200 and moved["assignee"] == "dave"
    status, _ = await api(bot, "POST", f"/api/v1/escalations/{case}/transfer", alice, {"to": "alice"})
    assert status == 403, "no longer hers to move"
    status, body = await api(bot, "POST", f"/api/v1/escalations/{case}/transfer", dave, {"to": "nobody"})
    assert status == 400 and "nobody" in body["error"]


@pytest.mark.parametrize("path,method", [
    ("/api/v1/escalations", "GET"), ("/api/v1/escalations/1/claim", "POST"), ("/api/v1/escalations/1/close", "POST"),
    ("/api/v1/escalations/1/transfer", "POST"), ("/api/v1/escalations/1/messages", "GET"),
    ("/api/v1/escalations/1/messages", "POST"), ("/api/v1/escalations/1/notes", "POST"),
])
async def test_every_route_refuses_anonymous_and_wrong_roles(bot: Running, path: str, method: str) -> None:
    ops = await staff(bot, "olga", "ops")
    assert (await api(bot, method, path, None))[0] == 401
    assert (await api(bot, method, path, "lbt_not-a-real-token"))[0] == 401
    assert (await api(bot, method, path, ops))[0] == 403


async def test_revoked_token_is_refused(bot: Running) -> None:
    token = await staff(bot, "erin", "officer")
    assert (await api(bot, "GET", "/api/v1/escalations", token))[0] == 200
    assert await bot.app[ACCOUNTS].revoke_token(token) == 1
    assert (await api(bot, "GET", "/api/v1/escalations", token))[0] == 401


async def test_openapi_document(bot: Running) -> None:
    async with bot.wechat.http.get(f"{bot.wechat.base}/api/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.") and "/api/v1/escalations/{id}/claim" in doc["paths"]


async def test_login_lockout_after_five_failures(bot: Running) -> None:
    accounts = bot.app[ACCOUNTS]
    await accounts.add("frank", "officer", "the-right-password")
    for _ in range(5):
        assert await accounts.login("frank", "wrong-password") is None
    assert await accounts.login("frank", "the-right-password") is None, "locked for 15 minutes"
    assert bot.count("audit_log", "actor='frank' AND action='login_failed'") == 6


def test_cli_users_and_tokens(settings: Settings) -> None:
    env = {"BOT_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "--log-level", "WARNING", *args], input=stdin,
                              capture_output=True, text=True, cwd=REPO_ROOT, env=env)

    assert run("users", "add", "gina", "--role", "officer", "--password-stdin", stdin="long-enough-pw\n").returncode == 0
    assert run("users", "add", "gina", "--role", "officer", "--password-stdin", stdin="long-enough-pw\n").returncode == 1
    created = run("tokens", "create", "gina")
    token = created.stdout.split()[-1]
    assert created.returncode == 0 and token.startswith("lbt_")
    assert run("tokens", "revoke", token).returncode == 0
    assert run("tokens", "revoke", token).returncode == 1


async def _until(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")



async def test_sla_breach_flags_the_case_and_tells_a_p1_citizen_to_call(start_bot: Any, settings: Settings,
                                                                      fake_api: FakeWeChatAPI) -> None:
    bot = await start_bot(settings.replace(sla_minutes=(0.01, 0.01, 0.01)))
    token = await staff(bot, "hana", "officer")
    await bot.wechat.post(text("oLateP1", "救命 我被绑架了 在曼谷"))
    await _until(lambda: bool(bot.rows("SELECT 1 FROM escalations WHERE breached_at IS NOT NULL")), timeout=12)
    await _until(lambda: any("立即拨打12308" in t for t in fake_api.texts_for("oLateP1")), timeout=5)
    items = (await api(bot, "GET", "/api/v1/escalations", token))[1]["items"]
    assert items[0]["breached_at"] is not None
    assert bot.count("audit_log", "action='sla_breach'") == 1


def test_sla_minutes_are_configurable() -> None:
    custom = Settings.from_env({"BOT_SLA_MINUTES": "1,5,20"}, demo=True)
    assert [custom.sla(p).total_seconds() for p in (1, 2, 3)] == [60, 300, 1200]
    with pytest.raises(Exception, match="BOT_SLA_MINUTES"):
        Settings.from_env({"BOT_SLA_MINUTES": "1,2"}, demo=True)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # several processes need PostgreSQL
async def test_two_officers_on_two_processes_claiming_one_case_only_one_gets_it(start_bot: Any) -> None:
    first, second = await start_bot(), await start_bot()  # two bot processes on one database
    alice, bob = await staff(first, "alice", "officer"), await staff(second, "bob", "officer")
    people = [f"oContested{i}" for i in range(4)]
    for person in people:
        await first.wechat.post(text(person, "转人工"))
    cases = [item["id"] for item in (await api(first, "GET", "/api/v1/escalations", alice))[1]["items"]]
    assert len(cases) == len(people)
    for case in cases:
        results = await asyncio.gather(api(first, "POST", f"/api/v1/escalations/{case}/claim", alice),
                                       api(second, "POST", f"/api/v1/escalations/{case}/claim", bob))
        assert sorted(status for status, _ in results) == [200, 409], results
        winner = next(body["assignee"] for status, body in results if status == 200)
        assert first.rows("SELECT assignee FROM escalations WHERE id=?", case) == [(winner,)]
    claimed = first.rows("SELECT COUNT(*) FROM messages WHERE direction='out' AND text LIKE '值班人员已接手%'")
    assert claimed == [(len(people),)], "each citizen told once that an officer took the case"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # several processes need PostgreSQL
async def test_sla_breach_is_flagged_once_by_two_processes(start_bot: Any, settings: Settings,
                                                           fake_api: FakeWeChatAPI) -> None:
    fast = settings.replace(sla_minutes=(0.01, 0.01, 0.01))
    first, second = await asyncio.gather(start_bot(fast), start_bot(fast))
    await first.wechat.post(text("oLateTwice", "救命 我被绑架了 在曼谷"))
    await asyncio.sleep(1.0)  # past its SLA; both processes' SLA rounds (every 5 s) have not come round yet
    flagged = await asyncio.gather(first.app[QUEUE].check_sla(), second.app[QUEUE].check_sla())
    assert sorted(len(cases) for cases in flagged) == [0, 1], "one process flagged it, the other skipped it"
    await _until(lambda: any("立即拨打12308" in t for t in fake_api.texts_for("oLateTwice")), timeout=5)
    await asyncio.sleep(5.5)  # the background rounds of both processes come and go
    assert first.count("audit_log", "action='sla_breach'") == 1
    assert sum("立即拨打12308" in t for t in fake_api.texts_for("oLateTwice")) == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # several processes need PostgreSQL
async def test_login_lockout_counts_failures_on_every_process(start_bot: Any) -> None:
    first, second = await start_bot(), await start_bot()
    await first.app[ACCOUNTS].add("ivan", "officer", "the-right-password")
    # Five wrong passwords at once, spread over both processes.
    results = await asyncio.gather(*((first, second)[i % 2].app[ACCOUNTS].login("ivan", f"wrong-{i}")
                                     for i in range(5)))
    assert results == [None] * 5
    assert await second.app[ACCOUNTS].login("ivan", "the-right-password") is None, "locked for 15 minutes"


async def test_officers_acting_while_the_citizen_writes_never_deadlock(bot: Running) -> None:
    """Transfers lock the case while the citizen's messages update the same conversation and case: both must
    take the rows in one order, or PostgreSQL aborts one side (a 500 for the officer, an error reply for the
    citizen)."""
    alice, bob = await staff(bot, "alice", "officer"), await staff(bot, "bob", "officer")
    await bot.wechat.post(text("oRace", "救命 我被绑架了", msg_id=5_500_000))
    eid = bot.rows("SELECT id FROM escalations")[0][0]
    assert (await api(bot, "POST", f"/api/v1/escalations/{eid}/claim", alice))[0] == 200

    async def citizen(i: int) -> str:
        reply = await bot.wechat.post(text("oRace", f"我被绑架了，他们还在打我，第{i}次", msg_id=5_500_001 + i))
        assert reply.status == 200
        return reply.text or ""

    async def officer(i: int) -> int:
        to = "bob" if i % 2 == 0 else "alice"
        return (await api(bot, "POST", f"/api/v1/escalations/{eid}/transfer", alice if i % 2 == 0 else bob,
                          {"to": to}))[0]

    results = await asyncio.gather(*(f(i) for i in range(20) for f in (citizen, officer)))
    statuses = [r for r in results if isinstance(r, int)]
    replies = [r for r in results if isinstance(r, str)]
    assert set(statuses) <= {200, 403}, statuses  # 403: the other officer got it first
    assert not any("系统暂时出了点问题" in r for r in replies)
    assert bot.count("messages", "direction='in' AND status='answered'") == 21


async def test_a_claim_during_a_citizen_turn_is_not_undone_by_it(start_bot: Any, settings: Settings) -> None:
    """An officer claims the case while the citizen's next message is being handled (here: its classifier takes
    0.8 s between loading the conversation and saving it). The claim waits for that turn, so the turn's save
    cannot write the old state ("queued") over the officer's ("with_officer")."""
    from tests.fakes.rasa import SlowRasa

    rasa = SlowRasa(delay=2.0)
    await rasa.start()
    try:
        bot = await start_bot(settings.replace(nlu_engine="rasa", rasa_url=rasa.url, rasa_timeout=0.8))
        alice = await staff(bot, "alice", "officer")
        await bot.wechat.post(text("oClaimRace", "救命 我被绑架了 在金边", msg_id=5_600_000))
        eid = bot.rows("SELECT id FROM escalations")[0][0]
        turn = asyncio.ensure_future(bot.wechat.post(text("oClaimRace", "他们还在打我", msg_id=5_600_001)))
        await asyncio.sleep(0.3)  # the turn has loaded the conversation and waits for its classifier
        status, claimed = await api(bot, "POST", f"/api/v1/escalations/{eid}/claim", alice)
        assert status == 200 and claimed["assignee"] == "alice"
        claim_waited_for_the_turn = turn.done()
        assert (await turn).status == 200
        assert bot.rows("SELECT state FROM conversations") == [("with_officer",)]
        assert claim_waited_for_the_turn
    finally:
        await rasa.close()


async def test_a_change_made_under_the_users_lock_before_the_turn_starts_is_what_the_turn_starts_from(
        bot: Running) -> None:
    """On SQLite a turn starts from the conversation as read when its message was recorded, unless someone held
    the user's lock in between. Here an officer (played by the test, through the pipeline's own lock) holds it
    while the next message is recorded, and hands the case to themself: the turn must start from that."""
    from sqlalchemy import text as sql

    from bot.app import PIPELINE

    await bot.wechat.post(text("oLockedStart", "救命 我被绑架了 在金边", msg_id=5_700_000))
    assert bot.rows("SELECT state FROM conversations") == [("queued",)]
    user_id = bot.rows("SELECT id FROM users WHERE openid = 'oLockedStart'")[0][0]
    async with bot.app[PIPELINE].locks.hold(user_id):
        turn = asyncio.ensure_future(bot.wechat.post(text("oLockedStart", "他们还在打我", msg_id=5_700_001)))
        for _ in range(200):
            if bot.count("messages", "direction='in'") == 2:
                break
            await asyncio.sleep(0.01)
        assert bot.count("messages", "direction='in'") == 2 and not turn.done()
        async with bot.app[QUEUE].sessions.begin() as session:
            await session.execute(sql("UPDATE conversations SET state = 'with_officer'"))
    assert (await turn).status == 200
    assert bot.rows("SELECT state FROM conversations") == [("with_officer",)]
