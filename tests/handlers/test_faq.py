"""Consular questions answered from the knowledge base, "did you mean", and embassy contacts."""

from __future__ import annotations

import pytest

from tests.handlers.support import Chat, assert_hotline, faq_slugs, first_line, kb, missions

# A natural question per seed FAQ topic (none is a verbatim copy of the entry's question list).
QUESTIONS = {
    "consular_scope": "领事保护都包括什么，使馆能帮我付医药费吗",
    "fraud_check": "有人自称12308打电话让我转账，是真的吗",
    "hotline": "12308热线怎么打",
    "labor_dispute": "老板拖欠我工资三个月了怎么办",
    "lost_passport": "我的护照丢了怎么办",
    "money_trouble": "钱包被偷了身上没钱了",
    "notarization": "在国外怎么办理公证",
    "passport_renewal": "我的护照快过期了，在国外怎么换",
    "registration": "出国了想在中国领事APP上做海外公民登记，怎么弄",
    "safety_alert": "外交部的安全提醒在哪里看",
    "travel_document": "旅行证是什么，怎么申请",
    "visa": "去日本的签证怎么办",
}
PERSON_FOOTER_ZH = "需要人工帮助，回复“人工”。"


def test_every_seed_faq_topic_has_a_question_here() -> None:
    assert sorted([*QUESTIONS, "embassy_contact"]) == faq_slugs()
    assert len(faq_slugs()) == 13


@pytest.mark.parametrize("slug", sorted(QUESTIONS))
async def test_faq_topic_is_answered(chat: Chat, slug: str) -> None:
    reply = await chat.say(QUESTIONS[slug])

    answer = kb(slug)["answer"]["zh"]
    assert reply.startswith(first_line(answer)), f"{slug}: expected its answer, got:\n{reply}"
    paragraphs = [p.strip() for p in answer.strip().split("\n\n") if p.strip()]
    assert paragraphs[-1].splitlines()[-1] in reply, "the whole answer fits in the first reply"
    assert reply.rstrip().endswith(PERSON_FOOTER_ZH)
    assert chat.last_inbound() == ("faq", f"faq:{slug}")
    assert chat.conversation()["state"] == "idle"
    assert chat.escalations() == []


async def test_embassy_contact_with_a_known_country(chat: Chat) -> None:
    reply = await chat.say("我在德国，中国大使馆电话是多少")

    assert reply.startswith("中国驻德国使领馆：")
    embassy = next(m for m in missions("DE") if m["kind"] == "embassy")
    assert embassy["name"] in reply and embassy["duty_phone"] in reply
    for mission in missions("DE")[:3]:
        assert mission["name"] in reply
    assert_hotline(reply)
    assert chat.last_inbound()[1] == "faq:embassy_contact"
    assert chat.conversation()["country"] == "DE"


@pytest.mark.parametrize("question,answer,iso", [
    ("怎么联系领事馆", "我在德国", "DE"),
    ("大使馆电话是多少", "法国", "FR"),
])
async def test_embassy_contact_asks_for_the_country_first(chat: Chat, question: str, answer: str, iso: str) -> None:
    reply = await chat.say(question)
    assert "请告诉我您在哪个国家或城市" in reply
    conversation = chat.conversation()
    assert conversation["state"] == "awaiting_country"
    assert conversation["context"]["pending"] == {"kind": "embassy_contact"}

    reply = await chat.say(answer)
    embassy = next(m for m in missions(iso) if m["kind"] == "embassy")
    assert embassy["name"] in reply and embassy["duty_phone"] in reply
    assert_hotline(reply)
    conversation = chat.conversation()
    assert conversation["state"] == "idle" and conversation["country"] == iso
    assert "pending" not in conversation["context"]
    assert chat.escalations() == []


@pytest.mark.parametrize("question", ["中国大使馆电话是多少", "附近的中国领事馆在哪里"])
async def test_chinese_embassy_question_without_a_country_asks_where(chat: Chat, question: str) -> None:
    reply = await chat.say(question)
    assert "驻中国" not in reply
    assert "请告诉我您在哪个国家或城市" in reply
    assert chat.conversation()["state"] == "awaiting_country"

    reply = await chat.say("我在德国")
    embassy = next(m for m in missions("DE") if m["kind"] == "embassy")
    assert embassy["duty_phone"] in reply


# --------------------------------------------------------------------------- 4. did you mean


@pytest.mark.parametrize("pick", ["2", "２"])
async def test_did_you_mean_then_a_number(chat: Chat, pick: str) -> None:
    reply = await chat.say("我想问一下证件")

    assert reply.startswith("我不太确定您想问哪一个，请回复数字：")
    conversation = chat.conversation()
    assert conversation["state"] == "awaiting_choice"
    choices = conversation["context"]["choices"]
    assert 2 <= len(choices) <= 3 and len(set(choices)) == len(choices)
    for i, slug in enumerate(choices, 1):
        assert f"{i}. {kb(slug)['title']['zh']}" in reply.splitlines()
    assert chat.last_inbound()[1] == "did_you_mean"

    reply = await chat.say(pick)
    second = choices[1]
    assert reply.startswith(first_line(kb(second)["answer"]["zh"])), reply
    assert chat.last_inbound()[1] == f"faq:{second}"
    conversation = chat.conversation()
    assert conversation["state"] == "idle"
    assert "choices" not in conversation["context"]


# --------------------------------------------------------------------------- 5. English questions


@pytest.mark.parametrize("slug,question", [
    ("passport_renewal", "How do I renew my Chinese passport abroad?"),
    ("lost_passport", "I lost my passport in London, what should I do?"),
])
async def test_english_faq_is_answered_in_english(chat: Chat, slug: str, question: str) -> None:
    reply = await chat.say(question)

    answer = kb(slug)["answer"]["en"]
    assert reply.startswith(first_line(answer)), reply
    assert first_line(kb(slug)["answer"]["zh"]) not in reply
    assert PERSON_FOOTER_ZH not in reply
    assert chat.last_inbound() == ("faq", f"faq:{slug}")
    assert chat.conversation()["language"] == "en"
    # Long English answers continue through the customer-service API, ending with the English footer.
    last_paragraph = answer.strip().split("\n\n")[-1].strip()
    rest = "\n\n".join(await chat.later(1))
    assert last_paragraph in reply + "\n\n" + rest
    assert 'Need a person? Reply "human".' in reply + rest
