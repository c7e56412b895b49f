"""Emergencies end to end: the first reply, the escalation and case card, the follow-up, the country question."""

from __future__ import annotations

import pytest

from nlu.geo import en_name, zh_name
from tests.handlers.conftest import NewChat
from tests.handlers.support import (EMERGENCIES, PRIORITY, Chat, assert_hotline, assert_local_numbers,
                                    assert_no_local_numbers, assert_numbered_steps, directory_countries,
                                    duty_phones, expected_duty_phone, first_line, kb, local_numbers)

ASK_WHERE_ZH = "请告诉我您在哪个国家或城市"

# (intent, message, ISO country, city named in the message, English?)
WITH_COUNTRY = [
    ("emergency_arrest", "我在迪拜被警察抓了", "AE", "迪拜", False),
    ("emergency_crime", "I was robbed at knifepoint in Paris", "FR", "Paris", True),
    ("emergency_medical", "我妈在东京晕倒了送医院了", "JP", "东京", False),
    ("emergency_missing", "我儿子在西港联系不上三天了", "KH", None, False),
    ("emergency_kidnap", "我被关在妙瓦底的园区出不去", "MM", None, False),
    ("emergency_disaster", "马拉喀什地震了我们被困", "MA", None, False),
    ("emergency_death", "我爸在泰国去世了", "TH", None, False),
]

WITHOUT_COUNTRY = {
    "emergency_arrest": "我被警察抓了",
    "emergency_crime": "刚才被人持刀抢劫",
    "emergency_medical": "我朋友受伤了流了很多血",
    "emergency_missing": "家人出国旅游失联了",
    "emergency_kidnap": "我被绑架了",
    "emergency_disaster": "这里地震了",
    "emergency_death": "家人在国外去世了怎么办",
}

# A location message sent after the bot asked where they are: (lat, lon, label, ISO).
LOCATIONS = {
    "emergency_arrest": (45.4642, 9.19, "Milano", "IT"),
    "emergency_crime": (48.8566, 2.3522, "Paris", "FR"),
    "emergency_medical": (35.6762, 139.6503, "Tokyo", "JP"),
    "emergency_missing": (11.5564, 104.9282, "Phnom Penh", "KH"),
    "emergency_kidnap": (16.8409, 96.1735, "Yangon", "MM"),
    "emergency_disaster": (31.6295, -7.9811, "Marrakesh", "MA"),
    "emergency_death": (13.7563, 100.5018, "Bangkok", "TH"),
}

# A typed answer to "where are you": (text, ISO).
TYPED_PLACES = {
    "emergency_arrest": ("我在米兰", "IT"),
    "emergency_crime": ("在巴黎", "FR"),
    "emergency_medical": ("我在米兰", "IT"),
    "emergency_missing": ("在美国纽约", "US"),
    "emergency_kidnap": ("泰国曼谷", "TH"),
    "emergency_disaster": ("土耳其", "TR"),
    "emergency_death": ("我在米兰", "IT"),
}


def title(intent: str, english: bool = False) -> str:
    return str(kb(intent)["title"]["en" if english else "zh"])


def assert_playbook_priority(intent: str) -> int:
    priority = int(kb(intent)["priority"])
    assert priority == PRIORITY[intent], f"{intent}.yml says priority {priority}"
    return priority


async def assert_followup_arrives(chat: Chat, intent: str, english: bool = False) -> None:
    sent = await chat.followup_text(intent, english)
    followup = kb(intent)["followup"]["en" if english else "zh"]
    assert first_line(followup) in sent
    assert first_line(followup) not in chat.replies[-1], "the follow-up belongs in a later message"


# --------------------------------------------------------------------------- 1. with a country


@pytest.mark.parametrize("intent,message,iso,city,english", WITH_COUNTRY, ids=[row[0] for row in WITH_COUNTRY])
async def test_emergency_with_country(chat: Chat, intent: str, message: str, iso: str, city: str | None,
                                      english: bool) -> None:
    reply = await chat.say(message)

    assert title(intent, english) in reply.splitlines()[0]
    assert_local_numbers(reply, iso)
    assert_hotline(reply)
    assert duty_phones(iso), f"the directory has no mission with a duty phone in {iso}"
    assert expected_duty_phone(iso, city) in reply
    assert_numbered_steps(reply, intent, english)
    assert ASK_WHERE_ZH not in reply and "Tell me which country" not in reply

    escalation = chat.escalation()
    assert escalation["priority"] == assert_playbook_priority(intent)
    assert escalation["reason"] == intent and escalation["status"] == "waiting"
    assert escalation["case"]["type"] == intent
    assert escalation["case"]["country"] == iso
    assert escalation["case"]["said"] == message

    conversation = chat.conversation()
    assert conversation["state"] == "queued"
    assert conversation["country"] == iso
    assert conversation["language"] == ("en" if english else "zh")
    assert chat.last_inbound() == (intent, "emergency")

    await assert_followup_arrives(chat, intent, english)


# --------------------------------------------------------------------------- 2. without a country


async def start_without_country(chat: Chat, intent: str) -> str:
    reply = await chat.say(WITHOUT_COUNTRY[intent])
    assert title(intent) in reply.splitlines()[0]
    assert_hotline(reply)
    assert_numbered_steps(reply, intent)
    assert ASK_WHERE_ZH in reply
    assert_no_local_numbers(reply)
    conversation = chat.conversation()
    assert conversation["state"] == "awaiting_country"
    assert conversation["country"] is None
    assert conversation["context"]["pending"] == {"kind": "emergency", "intent": intent}
    escalation = chat.escalation()
    assert escalation["priority"] == assert_playbook_priority(intent)
    assert escalation["case"]["type"] == intent and escalation["case"]["country"] is None
    await assert_followup_arrives(chat, intent)
    return reply


@pytest.mark.parametrize("intent", EMERGENCIES)
async def test_emergency_without_country_then_location(chat: Chat, intent: str) -> None:
    await start_without_country(chat, intent)
    lat, lon, label, iso = LOCATIONS[intent]

    reply = await chat.location(lat, lon, label)

    assert_local_numbers(reply, iso)
    assert_hotline(reply)
    assert any(phone in reply for phone in duty_phones(iso)), reply
    conversation = chat.conversation()
    assert conversation["state"] == "queued"
    assert conversation["country"] == iso
    assert "pending" not in conversation["context"]
    assert chat.user()["country"] == iso
    assert (chat.user()["latitude"], chat.user()["longitude"]) == (lat, lon)
    escalation = chat.escalation()  # the same case, completed
    assert escalation["priority"] == PRIORITY[intent] and escalation["reason"] == intent
    assert escalation["case"]["type"] == intent
    assert escalation["case"]["country"] == iso
    assert escalation["case"]["location"]["lat"] == lat and escalation["case"]["location"]["lon"] == lon


@pytest.mark.parametrize("intent", EMERGENCIES)
async def test_emergency_without_country_then_typed_city(chat: Chat, intent: str) -> None:
    await start_without_country(chat, intent)
    place, iso = TYPED_PLACES[intent]

    reply = await chat.say(place)

    assert_local_numbers(reply, iso)
    assert_hotline(reply)
    assert any(phone in reply for phone in duty_phones(iso)), reply
    assert not reply.startswith("【"), "the playbook is not repeated, only the numbers for the place"
    conversation = chat.conversation()
    assert conversation["state"] == "queued" and conversation["country"] == iso
    escalation = chat.escalation()
    assert escalation["priority"] == PRIORITY[intent] and escalation["reason"] == intent
    assert escalation["case"]["type"] == intent and escalation["case"]["country"] == iso


# The person answers "where are you?" with a plain place; the NLU reads the sentence as a (different)
# low-confidence emergency, and the emergency route outranks the pending question.
MISREAD_PLACES = [
    ("emergency_kidnap", "我被绑架了", "我在曼谷", "TH"),
    ("emergency_disaster", "There was an earthquake and I am trapped", "I am in Istanbul", "TR"),
    ("emergency_missing", "My daughter studying abroad has stopped answering", "She is in Tokyo", "JP"),
]


@pytest.mark.parametrize("intent,first,answer,iso", MISREAD_PLACES, ids=[row[0] for row in MISREAD_PLACES])
async def test_place_answer_completes_the_pending_emergency(chat: Chat, intent: str, first: str, answer: str,
                                                            iso: str) -> None:
    await chat.say(first)
    assert chat.conversation()["state"] == "awaiting_country"

    reply = await chat.say(answer)

    assert_local_numbers(reply, iso)
    assert_hotline(reply)
    assert chat.conversation()["context"].get("last_emergency") == intent
    escalation = chat.escalation()
    assert escalation["reason"] == intent
    assert escalation["case"]["type"] == intent, "the case card must keep the emergency the person reported"
    assert escalation["case"]["country"] == iso
    other_titles = [title(i, english) for i in EMERGENCIES if i != intent for english in (False, True)]
    assert not any(t in reply for t in other_titles), f"another emergency's playbook was sent:\n{reply}"


async def test_location_keeps_what_the_person_said_on_the_case_card(chat: Chat) -> None:
    await chat.say("我被警察抓了")
    await chat.location(45.4642, 9.19, "Milano")
    case = chat.escalation()["case"]
    assert case["country"] == "IT"
    assert case["said"] == "我被警察抓了"


# --------------------------------------------------------------------------- 9. Traditional Chinese


@pytest.mark.parametrize("message", ["我在杜拜被警察抓了", "我兒子在杜拜被警察帶走了"])
async def test_traditional_chinese_arrest_in_dubai(chat: Chat, message: str) -> None:
    reply = await chat.say(message)
    assert title("emergency_arrest") in reply
    assert_local_numbers(reply, "AE")
    assert expected_duty_phone("AE", "迪拜") in reply
    assert_hotline(reply)
    assert_numbered_steps(reply, "emergency_arrest")
    assert chat.conversation()["country"] == "AE"
    assert chat.conversation()["state"] == "queued"
    escalation = chat.escalation()
    assert escalation["case"]["country"] == "AE" and escalation["case"]["type"] == "emergency_arrest"
    assert escalation["priority"] == 2


# --------------------------------------------------------------------------- 5. English emergencies


def numbers_and_steps(reply: str) -> str:
    """The lines an English reader must be able to read (titles of missions aside)."""
    return "\n".join(line for line in reply.splitlines() if line[:1].isdigit() or line.startswith("Local"))


async def test_english_emergency_with_country(chat: Chat) -> None:
    reply = await chat.say("My father collapsed in Tokyo and is in hospital")
    assert reply.startswith(f"[{title('emergency_medical', True)}]")
    assert "Local emergency numbers (Japan)" in reply
    assert_local_numbers(reply, "JP")
    assert expected_duty_phone("JP", "Tokyo") in reply
    assert_hotline(reply)
    assert "Do this now:" in reply
    assert_numbered_steps(reply, "emergency_medical", english=True)
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in numbers_and_steps(reply)), reply
    assert chat.conversation()["language"] == "en"
    assert chat.escalation()["priority"] == 1
    await assert_followup_arrives(chat, "emergency_medical", english=True)


async def test_english_emergency_without_country_asks_in_english(chat: Chat) -> None:
    reply = await chat.say("There was an earthquake and I am trapped")
    assert reply.startswith(f"[{title('emergency_disaster', True)}]")
    assert_hotline(reply)
    assert_numbered_steps(reply, "emergency_disaster", english=True)
    assert "Tell me which country or city you are in" in reply
    assert chat.conversation()["state"] == "awaiting_country"

    reply = await chat.say("Paris")
    assert "Local emergency numbers (France)" in reply
    assert_local_numbers(reply, "FR")
    assert_hotline(reply)
    assert chat.escalation()["case"]["country"] == "FR"


@pytest.mark.parametrize("intent,message", [
    ("emergency_arrest", "My son was arrested in Sydney"),
    ("emergency_kidnap", "I have been kidnapped in Manila, please help"),
], ids=["emergency_arrest", "emergency_kidnap"])
async def test_english_family_step_reads_as_text(chat: Chat, intent: str, message: str) -> None:
    reply = await chat.say(message)
    assert reply.startswith(f"[{title(intent, True)}]")
    assert_hotline(reply)
    assert "{" not in reply and "'Family'" not in reply, reply
    assert any(line.split(". ", 1)[-1].startswith("Family: ") for line in reply.splitlines()), reply


# --------------------------------------------------------------------------- 10. home regions


async def test_location_in_hong_kong_is_not_consular_protection(chat: Chat) -> None:
    reply = await chat.location(22.3193, 114.1694, "Hong Kong")
    assert "中国香港" in reply
    assert "12308和使领馆的领事保护服务于在外国的中国公民" in reply
    assert_local_numbers(reply, "HK")
    assert "999" in reply
    assert_hotline(reply)
    assert chat.escalations() == []
    conversation = chat.conversation()
    assert conversation["state"] == "idle" and conversation["country"] == "HK"


async def test_emergency_after_hong_kong_location_uses_999(chat: Chat) -> None:
    await chat.location(22.3193, 114.1694, "Hong Kong")
    reply = await chat.say("我朋友受伤了流了很多血")
    assert title("emergency_medical") in reply
    assert "服务于在外国的中国公民" in reply
    assert_local_numbers(reply, "HK")
    assert_hotline(reply)


# --------------------------------------------------------------------------- 12. every country in the directory


async def test_every_directory_country_gets_numbers_and_12308_within_2048_bytes(new_chat: NewChat) -> None:
    """One emergency per directory country (languages alternate, to keep the run short): 12308 always,
    the local numbers or a 'not checked' note, a duty phone when the directory has one."""
    problems: list[str] = []
    for index, iso in enumerate(directory_countries()):
        english = bool(index % 2)
        message = f"I was robbed in {en_name(iso)}" if english else f"我在{zh_name(iso)}被人抢劫了"
        chat = new_chat(iso)
        reply = await chat.say(message)  # checks: not empty, ≤ 2048 bytes
        try:
            assert_hotline(reply)
            if chat.conversation()["country"] != iso:
                raise AssertionError(f"country {chat.conversation()['country']} instead of {iso}")
            if local_numbers(iso):
                assert_local_numbers(reply, iso)
            else:
                assert ("no checked local emergency number" if english else "暂未核实") in reply, reply
            phones = duty_phones(iso)
            if phones:
                assert any(p in reply for p in phones), f"no duty phone for {iso}"
        except AssertionError as exc:
            problems.append(f"{iso} {message!r}: {exc}")
    assert not problems, "\n".join(problems)


async def test_very_long_emergency_message(chat: Chat) -> None:
    message = "我在迪拜被警察抓了，" + "请帮帮我，" * 700
    reply = await chat.say(message)
    assert_hotline(reply)
    assert_local_numbers(reply, "AE")
    assert len(chat.escalation()["case"]["said"]) <= 500
