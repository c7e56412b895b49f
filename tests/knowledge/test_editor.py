"""Ops staff edit the knowledge base, directory and alerts through the JSON API; citizens' next
messages (through the real /wechat path) show exactly what is published, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import pytest

from bot.api import ACCOUNTS
from bot.api_kb import KB
from knowledge.validate import is_live
from tests.conftest import Running
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.handlers.support import Chat, first_line, kb

pytestmark = pytest.mark.databases

SOURCE = [{"title": "外交部领事司", "url": "https://cs.mfa.gov.cn/", "date": "2026-11-01"}]


async def ops_token(bot: Running, name: str = "olga", role: str = "ops") -> str:
    await bot.app[ACCOUNTS].add(name, role, "a-long-password")
    return await bot.app[ACCOUNTS].create_token(name)


async def call(bot: Running, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with bot.wechat.http.request(method, f"{bot.wechat.base}{path}", json=body, headers=headers) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


def problems(body: dict[str, Any]) -> set[str]:
    return {p["field"] for p in body["problems"]}


async def test_draft_is_not_served_publish_is_and_rollback_restores(bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await ops_token(bot)
    chat = Chat(bot, fake_api, "o_editor_lost")
    original = first_line(kb("lost_passport")["answer"]["zh"])
    assert (await chat.say("护照丢了怎么办")).startswith(original)

    status, entry = await call(bot, "GET", "/api/v1/faq/lost_passport", token)
    assert status == 200 and entry["published_version"] == entry["latest_version"] == 1
    edited = {**entry["latest"], "answer": {**entry["latest"]["answer"],
                                            "zh": "【新流程】先在线预约。\n\n" + entry["latest"]["answer"]["zh"]}}
    status, entry = await call(bot, "PUT", "/api/v1/faq/lost_passport", token,
                               {**edited, "base_version": 1, "note": "新的预约流程"})
    assert status == 200 and entry["has_draft"] and entry["latest_version"] == 2
    assert entry["published"]["answer"]["zh"].startswith(original)

    reply = await chat.say("护照丢了怎么办")
    assert reply.startswith(original) and "新流程" not in reply, "an unpublished edit is never served"

    status, entry = await call(bot, "POST", "/api/v1/faq/lost_passport/publish", token, {})
    assert status == 200 and entry["published_version"] == 2 and not entry["has_draft"]
    assert (await chat.say("护照丢了怎么办")).startswith("【新流程】先在线预约。")

    status, diff = await call(bot, "GET", "/api/v1/faq/lost_passport/diff?from=1&to=2", token)
    assert status == 200 and any(line.startswith("+") and "新流程" in line for line in diff["diff"])

    status, entry = await call(bot, "POST", "/api/v1/faq/lost_passport/rollback", token, {"version": 1})
    assert status == 200 and entry["published_version"] == 3
    reply = await chat.say("护照丢了怎么办")
    assert reply.startswith(original) and "新流程" not in reply
    status, versions = await call(bot, "GET", "/api/v1/faq/lost_passport/versions", token)
    assert [(v["version"], v["published"], v["author"]) for v in versions["items"]] == [
        (3, True, "olga"), (2, False, "olga"), (1, False, "seed")]
    assert versions["items"][0]["note"] == "rollback to version 1"
    actions = bot.rows("SELECT action, target FROM audit_log WHERE actor = 'olga' ORDER BY id")
    assert actions == [("kb_edit", "kb:lost_passport"), ("kb_publish", "kb:lost_passport"),
                       ("kb_rollback", "kb:lost_passport")]


async def test_a_new_entry_is_a_draft_until_published_then_answers(bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await ops_token(bot)
    body = {"slug": "pet_travel", "title": "带宠物出境",
            "questions": ["带宠物出国要办什么手续", "猫狗出境检疫证明怎么办理", "宠物可以带出国吗需要什么证明"],
            "answer": "带宠物出境，先查目的国的入境检疫要求，再到海关办理动物检疫证明。", "sources": SOURCE}
    status, entry = await call(bot, "POST", "/api/v1/faq", token, body)
    assert status == 201 and entry["status"] == "draft" and entry["published"] is None
    assert "pet_travel" not in (await bot.app[KB].current()).entries, "drafts are never served"

    status, again = await call(bot, "POST", "/api/v1/faq", token, body)
    assert status == 409

    status, entry = await call(bot, "POST", "/api/v1/faq/pet_travel/publish", token, {})
    assert status == 200 and entry["status"] == "published"
    snapshot = await bot.app[KB].current()
    assert snapshot.entries["pet_travel"]["answer"]["zh"].startswith("带宠物出境")
    snapshot = await bot.app[KB].settled()  # the matcher learns the new questions in the background
    assert snapshot.match("带宠物出国要办什么手续").best == "pet_travel"

    status, _ = await call(bot, "DELETE", "/api/v1/faq/pet_travel", token)
    assert status == 204
    assert "pet_travel" not in (await bot.app[KB].current()).entries
    status, listing = await call(bot, "GET", "/api/v1/faq?q=宠物", token)
    assert [(i["slug"], i["status"]) for i in listing["items"]] == [("pet_travel", "archived")]


async def test_bad_edits_are_refused_with_the_field_and_lose_nothing(bot: Running) -> None:
    token = await ops_token(bot)
    status, body = await call(bot, "POST", "/api/v1/faq", token, {"slug": "Bad Slug", "title": "x", "questions": []})
    assert status == 400 and {"slug", "questions", "answer.zh"} <= problems(body)

    status, body = await call(bot, "POST", "/api/v1/faq", token, "not an object")
    assert status == 400
    async with bot.wechat.http.post(f"{bot.wechat.base}/api/v1/faq", data=b"{oops",
                                    headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400 and "JSON" in (await r.json())["error"]

    status, entry = await call(bot, "GET", "/api/v1/faq/visa", token)
    stale = {**entry["latest"], "answer": {"zh": "一个旧页面上的修改"}, "base_version": 0}
    status, body = await call(bot, "PUT", "/api/v1/faq/visa", token, stale)
    assert status == 409 and "changed since you opened it" in body["error"]

    status, _ = await call(bot, "POST", "/api/v1/faq", token, {
        "slug": "no_sources_yet", "title": "草稿", "questions": ["还没写完的问题"], "answer": "还没核实来源"})
    assert status == 201, "a draft may lack its sources"
    status, body = await call(bot, "POST", "/api/v1/faq/no_sources_yet/publish", token, {})
    assert status == 400 and "sources" in problems(body), "but it cannot be published without them"
    status, _ = await call(bot, "GET", "/api/v1/faq/nothing_here", token)
    assert status == 404
    status, body = await call(bot, "POST", "/api/v1/faq/visa/rollback", token, {"version": "x"})
    assert status == 400
    assert bot.count("kb_versions", "entry_id = (SELECT id FROM kb_entries WHERE slug = 'visa')") == 1


async def test_only_ops_and_admin_may_use_the_knowledge_api(bot: Running) -> None:
    officer = await ops_token(bot, "oscar", "officer")
    supervisor = await ops_token(bot, "sue", "supervisor")
    admin = await ops_token(bot, "ada", "admin")
    routes = [("GET", "/api/v1/faq"), ("POST", "/api/v1/faq"), ("GET", "/api/v1/faq/visa"),
              ("PUT", "/api/v1/faq/visa"), ("DELETE", "/api/v1/faq/visa"), ("POST", "/api/v1/faq/visa/publish"),
              ("POST", "/api/v1/faq/visa/rollback"), ("GET", "/api/v1/faq/visa/versions"),
              ("GET", "/api/v1/alerts"), ("POST", "/api/v1/alerts"), ("GET", "/api/v1/alerts/1"),
              ("PUT", "/api/v1/alerts/1"), ("DELETE", "/api/v1/alerts/1"), ("POST", "/api/v1/alerts/1/publish"),
              ("GET", "/api/v1/directory"), ("POST", "/api/v1/directory"), ("GET", "/api/v1/directory/TH"),
              ("PUT", "/api/v1/directory/TH"), ("POST", "/api/v1/directory/TH/publish"),
              ("GET", "/api/v1/directory/TH/versions")]
    for method, path in routes:
        assert (await call(bot, method, path, None, {}))[0] == 401, (method, path)
        assert (await call(bot, method, path, "lbt_revoked_or_unknown", {}))[0] == 401, (method, path)
        for token in (officer, supervisor):
            assert (await call(bot, method, path, token, {}))[0] == 403, (method, path)
    assert (await call(bot, "GET", "/api/v1/faq", admin))[0] == 200
    assert bot.count("kb_versions") == bot.count("kb_entries"), "refused calls changed nothing"

    status, spec = await call(bot, "GET", "/api/v1/openapi.json", None)
    for path in ("/api/v1/faq", "/api/v1/faq/{slug}", "/api/v1/faq/{slug}/publish", "/api/v1/faq/{slug}/versions",
                 "/api/v1/alerts/{id}/publish", "/api/v1/directory/{iso}/versions"):
        assert path in spec["paths"], path


def alert(country: str, level: str, text: str, starts: str, ends: str) -> dict[str, Any]:
    return {"country": country, "level": level, "text": {"zh": text}, "starts_at": starts, "ends_at": ends,
            "source": {"title": "中国驻泰国大使馆", "url": "https://th.china-embassy.gov.cn/"}}


async def test_live_alert_is_added_and_an_expired_one_never_shown(bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await ops_token(bot)
    today = datetime.now(UTC).date()
    old = alert("TH", "暂勿前往", "南部边境三府局势紧张（已结束）", "2026-01-01", (today - timedelta(days=1)).isoformat())
    live = alert("TH", "谨慎前往", "曼谷近期抗议活动频繁，请远离集会地点", (today - timedelta(days=1)).isoformat(),
                 (today + timedelta(days=30)).isoformat())
    ids = []
    for data in (old, live):
        status, created = await call(bot, "POST", "/api/v1/alerts", token, data)
        assert status == 201 and created["status"] == "draft"
        ids.append(created["id"])
        chat = Chat(bot, fake_api, f"o_alert_draft_{created['id']}")
        assert "安全提醒" not in await chat.say("我在曼谷被抢劫了，钱包护照都没了"), "a draft alert is not shown"
        status, published = await call(bot, "POST", f"/api/v1/alerts/{created['id']}/publish", token, {})
        assert status == 200
    status, listing = await call(bot, "GET", "/api/v1/alerts?country=TH", token)
    assert {(i["id"], i["live"], i["expired"]) for i in listing["items"]} == {(ids[0], False, True),
                                                                            (ids[1], True, False)}

    chat = Chat(bot, fake_api, "o_alert_emergency")
    reply = await chat.say("我在曼谷被抢劫了，钱包护照都没了")
    assert "⚠️ 安全提醒（谨慎前往）：曼谷近期抗议活动频繁" in reply
    assert "南部边境" not in reply, "an expired alert is never shown"
    faq = await Chat(bot, fake_api, "o_alert_faq").say("现在去泰国安全吗")
    assert faq.startswith("⚠️ 安全提醒（谨慎前往）：曼谷近期抗议活动频繁") and "南部边境" not in faq

    status, _ = await call(bot, "DELETE", f"/api/v1/alerts/{ids[1]}", token)
    assert status == 204
    faq = await Chat(bot, fake_api, "o_alert_faq2").say("现在去泰国安全吗")
    assert "⚠️" not in faq and "目前没有针对泰国的有效安全提醒" in faq

    status, body = await call(bot, "POST", "/api/v1/alerts", token,
                              {**live, "level": "很危险", "ends_at": "2020-01-01", "country": "XX"})
    assert status == 400 and {"level", "ends_at", "country"} <= problems(body)


def test_a_date_only_expiry_lasts_through_that_day_in_beijing() -> None:
    data = alert("TH", "注意安全", "x", "2026-12-01", "2026-12-31")
    assert not is_live(data, datetime(2026, 11, 30, 15, 59, tzinfo=UTC))
    assert is_live(data, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # 1 December, 00:00 in Beijing
    assert is_live(data, datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC))
    assert not is_live(data, datetime(2026, 12, 31, 16, 0, tzinfo=UTC))


async def test_directory_edits_are_checked_with_phonenumbers_and_published(bot: Running,
                                                                          fake_api: FakeWeChatAPI) -> None:
    token = await ops_token(bot)
    status, country = await call(bot, "GET", "/api/v1/directory/TH", token)
    assert status == 200
    data = country["latest"]
    embassy = next(m for m in data["missions"] if m["kind"] == "embassy")
    old_phone = embassy["duty_phone"]

    bad = {**data, "missions": [{**m, "duty_phone": "+66 12"} if m is embassy else m for m in data["missions"]],
           "emergency": {**data["emergency"], "police": "999"}}
    status, body = await call(bot, "PUT", "/api/v1/directory/TH", token, bad)
    assert status == 400 and {"duty_phone", "police"} <= problems(body)
    assert any("not a valid number" in p["reason"] or "does not parse" in p["reason"] for p in body["problems"])

    example = phonenumbers.example_number_for_type("TH", phonenumbers.PhoneNumberType.FIXED_LINE)
    new_phone = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert new_phone != old_phone
    good = {**data, "missions": [{**m, "duty_phone": new_phone} if m is embassy else m for m in data["missions"]]}
    status, country = await call(bot, "PUT", "/api/v1/directory/TH", token, good)
    assert status == 200 and country["has_draft"]
    assert old_phone in await Chat(bot, fake_api, "o_dir_1").say("我在曼谷被抢劫了")

    status, _ = await call(bot, "POST", "/api/v1/directory/TH/publish", token, {})
    assert status == 200
    reply = await Chat(bot, fake_api, "o_dir_2").say("我在曼谷被抢劫了")
    assert new_phone in reply and old_phone not in reply

    status, versions = await call(bot, "GET", "/api/v1/directory/TH/versions", token)
    assert [(v["version"], v["author"], v["published"]) for v in versions["items"]] == [
        (2, "olga", True), (1, "seed", False)]
    status, _ = await call(bot, "POST", "/api/v1/directory/TH/rollback", token, {"version": 1})
    assert status == 200
    assert old_phone in await Chat(bot, fake_api, "o_dir_3").say("我在曼谷被抢劫了")


async def test_a_long_alert_never_pushes_the_first_emergency_reply_past_wechats_limit(
        bot: Running, fake_api: FakeWeChatAPI) -> None:
    token = await ops_token(bot)
    status, playbook = await call(bot, "GET", "/api/v1/faq/emergency_crime", token)
    too_long = {**playbook["latest"], "answer": {**playbook["latest"]["answer"], "zh": "请保留所有收据和照片。" * 10}}
    status, body = await call(bot, "PUT", "/api/v1/faq/emergency_crime", token, too_long)
    assert status == 400 and "answer.zh" in problems(body), "an opening that cannot fit the first reply is refused"
    longest = {**playbook["latest"], "answer": {**playbook["latest"]["answer"], "zh": "请保留所有收据和照片。" * 9},
               "steps": {**playbook["latest"]["steps"], "zh": [(f"第{i}步：" + "尽快到最近的警察局报案并索取报案证明。" * 2)[:40]
                                                               for i in range(1, 7)]}}
    assert all(len(step) <= 40 for step in longest["steps"]["zh"])
    status, body = await call(bot, "PUT", "/api/v1/faq/emergency_crime", token, longest)
    assert status == 200, body
    assert (await call(bot, "POST", "/api/v1/faq/emergency_crime/publish", token, {}))[0] == 200
    today = datetime.now(UTC).date()
    status, created = await call(bot, "POST", "/api/v1/alerts", token, alert(
        "TH", "暂勿前往", "泰国南部局势紧张，" + "请远离人群聚集地点。" * 29, today.isoformat(),
        (today + timedelta(days=7)).isoformat()))
    assert status == 201 and len(created["latest"]["text"]["zh"]) == 299
    assert (await call(bot, "POST", f"/api/v1/alerts/{created['id']}/publish", token, {}))[0] == 200

    chat = Chat(bot, fake_api, "o_alert_long")
    first = await chat.say("我在曼谷被抢劫了，钱包护照都没了")
    assert len(first.encode()) <= 2048 and first.startswith("【") and "+86-10-12308" in first
    assert "泰国南部局势紧张" not in first
    await fake_api.wait_for_sent(1)
    assert any(t.startswith("⚠️ 安全提醒（暂勿前往）：泰国南部局势紧张") for t in fake_api.texts_for("o_alert_long")), \
        "the alert still reaches the person, in the next message"
