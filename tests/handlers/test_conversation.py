"""Conversation-level behaviour: greetings, fallbacks, a person on request, menus, restarts."""

from __future__ import annotations

from tests.conftest import Running, StartBot
from tests.fakes.wechat_server import event
from tests.handlers.conftest import NewChat
from tests.handlers.support import (Chat, assert_hotline, assert_local_numbers, duty_phones, first_line, kb,
                                    missions)

# The fallback's offer of a person (the 12308 line itself mentions 人工 too: "按0再按9可直接找人工").
OFFER_PERSON = "回复“人工”"

# --------------------------------------------------------------------------- 5. greetings


async def test_english_greeting(chat: Chat) -> None:
    reply = await chat.say("Hello")
    assert reply.startswith("Hello! I'm Lingbao")
    assert "emergency" in reply and "duty officer" in reply
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in reply)
    assert chat.last_inbound() == ("greet", "smalltalk")
    assert chat.conversation()["language"] == "en"


async def test_chinese_greeting(chat: Chat) -> None:
    reply = await chat.say("你好")
    assert reply.startswith("您好！")
    assert "领保" in reply
    assert chat.last_inbound() == ("greet", "smalltalk")


# --------------------------------------------------------------------------- 6. fallbacks


async def test_two_misses_in_a_row_offer_a_person(chat: Chat) -> None:
    first = await chat.say("今天股票涨了吗")
    assert OFFER_PERSON not in first
    assert_hotline(first)
    assert chat.last_inbound()[1] == "fallback"

    second = await chat.say("推荐个餐厅")
    assert "人工" in second and OFFER_PERSON in second
    assert_hotline(second)
    assert chat.last_inbound()[1] == "fallback"
    assert chat.escalations() == [], "offering a person does not queue them unasked"


async def test_english_misses_offer_a_person_in_english(chat: Chat) -> None:
    first = await chat.say("What is the weather like tomorrow?")
    assert first.startswith("Sorry, I can't help with that.")
    assert_hotline(first)
    second = await chat.say("Can you book me a hotel?")
    assert 'Reply "human"' in second
    assert_hotline(second)


async def test_an_answer_resets_the_miss_count(chat: Chat) -> None:
    await chat.say("今天股票涨了吗")
    await chat.say("我的护照丢了怎么办")
    reply = await chat.say("推荐个餐厅")
    assert OFFER_PERSON not in reply, "one miss after an answer is a first miss again"
    assert_hotline(reply)


async def test_then_asking_for_a_person_after_the_offer(chat: Chat) -> None:
    await chat.say("今天股票涨了吗")
    await chat.say("推荐个餐厅")
    reply = await chat.say("人工")
    assert "已为您转接值班人员" in reply or "仍保留在队列中" in reply  # no officer online in these tests
    assert chat.escalation()["priority"] == 3


# --------------------------------------------------------------------------- 7. a person on request


async def test_request_human_queues_then_says_already_waiting(chat: Chat) -> None:
    reply = await chat.say("转人工")
    assert "已为您转接值班人员" in reply or "仍保留在队列中" in reply  # no officer online in these tests
    assert_hotline(reply)
    escalation = chat.escalation()
    assert escalation["priority"] == 3
    assert escalation["reason"] == "request_human" and escalation["status"] == "waiting"
    assert escalation["case"]["type"] == "request_human" and escalation["case"]["said"] == "转人工"
    assert chat.conversation()["state"] == "queued"
    assert chat.last_inbound() == ("request_human", "escalation")

    again = await chat.say("转人工")
    assert "您已在等待值班人员" in again
    assert_hotline(again)
    assert len(chat.escalations()) == 1
    assert chat.conversation()["state"] == "queued"


async def test_emergency_while_waiting_for_a_person_raises_the_priority(chat: Chat) -> None:
    await chat.say("转人工")
    assert chat.escalation()["priority"] == 3
    reply = await chat.say("我在迪拜被警察抓了")
    assert_local_numbers(reply, "AE")
    assert_hotline(reply)
    escalation = chat.escalation()
    assert escalation["priority"] == 2 and escalation["reason"] == "emergency_arrest"
    assert escalation["case"]["type"] == "emergency_arrest" and escalation["case"]["country"] == "AE"


# --------------------------------------------------------------------------- 8. state survives a restart


async def test_choice_survives_a_restart(bot: Running, start_bot: StartBot, new_chat: NewChat) -> None:
    chat = new_chat()
    await chat.say("我想问一下证件")
    choices = chat.conversation()["context"]["choices"]
    assert chat.conversation()["state"] == "awaiting_choice"
    await bot.server.close()

    chat = chat.moved_to(await start_bot())
    reply = await chat.say("2")

    assert reply.startswith(first_line(kb(choices[1])["answer"]["zh"])), reply
    assert chat.conversation()["state"] == "idle"


async def test_pending_emergency_survives_a_restart(bot: Running, start_bot: StartBot, new_chat: NewChat) -> None:
    chat = new_chat()
    await chat.say("我被绑架了")
    assert chat.conversation()["state"] == "awaiting_country"
    await bot.server.close()

    chat = chat.moved_to(await start_bot())
    reply = await chat.say("我在米兰")

    assert_local_numbers(reply, "IT")
    assert expected_phone_in(reply, "IT")
    assert_hotline(reply)
    conversation = chat.conversation()
    assert conversation["state"] == "queued" and conversation["country"] == "IT"
    escalation = chat.escalation()
    assert escalation["priority"] == 1 and escalation["case"]["type"] == "emergency_kidnap"
    assert escalation["case"]["country"] == "IT"


async def test_pending_embassy_question_survives_a_restart(bot: Running, start_bot: StartBot,
                                                           new_chat: NewChat) -> None:
    chat = new_chat()
    await chat.click("EMBASSY_CONTACT")
    assert chat.conversation()["state"] == "awaiting_country"
    await bot.server.close()

    chat = chat.moved_to(await start_bot())
    reply = await chat.location(13.7563, 100.5018, "Bangkok")
    embassy = next(m for m in missions("TH") if m["kind"] == "embassy")
    assert embassy["name"] in reply and embassy["duty_phone"] in reply


def expected_phone_in(reply: str, iso: str) -> bool:
    return any(phone in reply for phone in duty_phones(iso))


# --------------------------------------------------------------------------- 11. menu buttons


async def test_menu_emergency_help(chat: Chat) -> None:
    reply = await chat.click("EMERGENCY_HELP")
    assert "请直接告诉我发生了什么" in reply
    assert "可以发送位置" in reply
    assert_hotline(reply)
    assert chat.last_inbound() == ("event:click", "menu")
    assert chat.escalations() == []


async def test_menu_embassy_contact_then_country(chat: Chat) -> None:
    reply = await chat.click("EMBASSY_CONTACT")
    assert "请告诉我您在哪个国家或城市" in reply
    assert chat.conversation()["state"] == "awaiting_country"

    reply = await chat.say("泰国")
    assert reply.startswith("中国驻泰国使领馆：")
    for mission in missions("TH")[:3]:
        assert mission["name"] in reply
        assert mission["duty_phone"] in reply
    assert_hotline(reply)
    assert chat.conversation()["state"] == "idle"


async def test_menu_embassy_contact_with_a_known_country(chat: Chat) -> None:
    await chat.location(48.8566, 2.3522, "Paris")
    reply = await chat.click("EMBASSY_CONTACT")
    assert reply.startswith("中国驻法国使领馆：")
    embassy = next(m for m in missions("FR") if m["kind"] == "embassy")
    assert embassy["duty_phone"] in reply


async def test_menu_human(chat: Chat) -> None:
    reply = await chat.click("HUMAN")
    assert "已为您转接值班人员" in reply or "仍保留在队列中" in reply  # no officer online in these tests
    assert_hotline(reply)
    escalation = chat.escalation()
    assert escalation["priority"] == 3 and escalation["reason"] == "request_human"
    assert chat.conversation()["state"] == "queued"
    again = await chat.click("HUMAN", later=1)  # a second click (another CreateTime), not WeChat's retry
    assert "您已在等待值班人员" in again


async def test_location_alone_gives_the_local_numbers(chat: Chat) -> None:
    reply = await chat.location(48.8566, 2.3522, "Paris")
    assert reply.startswith("收到您的位置：法国。")
    assert_local_numbers(reply, "FR")
    assert_hotline(reply)
    assert chat.escalations() == []
    assert chat.user()["country"] == "FR"


async def test_follow_event_welcomes_with_12308(chat: Chat) -> None:
    reply = await chat.send(event(chat.openid, "subscribe"))
    assert "欢迎关注领保" in reply
    assert_hotline(reply)
