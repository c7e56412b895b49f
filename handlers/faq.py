"""Consular questions answered from the published knowledge base, with "did you mean" below confidence."""

from __future__ import annotations

import re
from typing import Any

from handlers.base import AWAITING_CHOICE, AWAITING_COUNTRY, IDLE, Outcome, Turn
from handlers.fallback import fallback
from handlers.format import alert_line, country_name, mission_card, split_message
from handlers.texts import hotline, pick
from knowledge.base import Snapshot
from nlu.geo import DOMESTIC

EMBASSY_SLUG = "embassy_contact"
ALERT_SLUG = "safety_alert"
CHOICE = re.compile(r"^\s*([1-3１-３])\s*[.。、)）]?\s*$")

PERSON_ZH = "需要人工帮助，回复“人工”。"
PERSON_EN = 'Need a person? Reply "human".'
DID_YOU_MEAN_ZH = "我不太确定您想问哪一个，请回复数字："
DID_YOU_MEAN_EN = "I'm not sure which of these you mean. Reply with a number:"
NONE_ZH = "都不是？回复“人工”转值班人员，或换个说法再问一次。"
NONE_EN = 'None of these? Reply "human" for a duty officer, or ask again in other words.'
ASK_COUNTRY_ZH = "请告诉我您在哪个国家或城市（也可以发送位置），我把当地中国使领馆的联系方式发给您。"
ASK_COUNTRY_EN = "Which country or city are you in (or send your location)? I'll send the Chinese embassy's contacts there."
NO_ALERT_ZH = "目前没有针对{country}的有效安全提醒（以外交部和使领馆最新发布为准）。"
NO_ALERT_EN = "There is no safety alert in force for {country} right now (the MFA and embassies publish the latest)."
ALERT_ASK_ZH = "告诉我您所在或要去的国家，我把当地有效的安全提醒发给您。"
ALERT_ASK_EN = "Tell me the country you are in or going to, and I'll send the alerts in force there."
NO_MISSION_ZH = "我们还没有核实过中国驻{country}使领馆的联系方式，请不要轻信网上搜到的号码。\n{hotline}"
NO_MISSION_EN = "We have not yet checked the contacts of the Chinese missions in {country}; don't trust numbers found online.\n{hotline}"
MISSIONS_ZH = "中国驻{country}使领馆："
MISSIONS_EN = "Chinese missions in {country}:"
SOURCE_ZH = "信息来源：{title}（{date}）。如有变动，以使领馆公布为准。领事保护电话用于紧急情况，一般事务请在办公时间联系。"
SOURCE_EN = "Source: {title} ({date}). Missions may change numbers; use the duty line for emergencies only."


async def faq(turn: Turn) -> Outcome:
    """Answer the best entry, or offer the three closest."""
    kb = await turn.knowledge()
    match = kb.match(turn.text, turn.nlu)
    if match.best is None:
        return await fallback(turn)
    if match.confident:
        return await answer(turn, kb, match.best)
    return did_you_mean(turn, kb, [h.slug for h in match.hits])


async def unsure(turn: Turn) -> Outcome:
    """A low-confidence message: the closest entries and a person (counts as a miss)."""
    kb = await turn.knowledge()
    match = kb.match(turn.text, turn.nlu)
    turn.conversation.context["fallbacks"] = int(turn.conversation.context.get("fallbacks", 0)) + 1
    if not match.hits or match.hits[0].score < 0.2:
        turn.conversation.context["fallbacks"] -= 1
        return await fallback(turn)
    outcome = did_you_mean(turn, kb, [h.slug for h in match.hits])
    outcome.replies[-1] += "\n" + hotline(turn.english)
    outcome.handler = "unsure"
    return outcome


def did_you_mean(turn: Turn, kb: Snapshot, slugs: list[str]) -> Outcome:
    english = turn.english
    lines = [pick(english, DID_YOU_MEAN_ZH, DID_YOU_MEAN_EN)]
    for i, slug in enumerate(slugs[:3], 1):
        lines.append(f"{i}. {_title(kb.entries[slug], english)}")
    lines.append(pick(english, NONE_ZH, NONE_EN))
    turn.conversation.state = AWAITING_CHOICE
    turn.conversation.context["choices"] = slugs[:3]
    return Outcome(["\n".join(lines)], handler="did_you_mean")


async def choose(turn: Turn) -> Outcome:
    """A number in reply to "did you mean"."""
    found = CHOICE.match(turn.text)
    choices = list(turn.conversation.context.get("choices") or [])
    index = int(found.group(1).translate(str.maketrans("１２３", "123"))) - 1 if found else -1
    turn.conversation.context.pop("choices", None)
    turn.conversation.state = IDLE
    if not 0 <= index < len(choices):
        return await faq(turn)
    kb = await turn.knowledge()
    if choices[index] not in kb.entries:
        return await faq(turn)
    return await answer(turn, kb, choices[index])


def is_choice(turn: Turn) -> bool:
    """The message is a bare 1–3 while a choice is pending."""
    return bool(CHOICE.match(turn.text)) and bool(turn.conversation.context.get("choices"))


async def answer(turn: Turn, kb: Snapshot, slug: str) -> Outcome:
    """The entry's answer for the person's country and language."""
    turn.conversation.context.pop("fallbacks", None)
    if turn.conversation.state == AWAITING_CHOICE:
        turn.conversation.state = IDLE
    if slug == EMBASSY_SLUG:
        return embassy_contact(turn, kb)
    replies = compose_answer(kb, slug, kb.entries[slug], turn.country, turn.english)
    return Outcome(replies, handler=f"faq:{slug}")


def compose_answer(kb: Snapshot, slug: str, entry: dict[str, Any], country: str | None,
                   english: bool) -> list[str]:
    """The messages an entry's answer becomes (also the console's preview of a draft)."""
    text = _answer_text(entry, country, english).strip()
    if slug == ALERT_SLUG:
        # Alerts in force come first; "none" or "which country?" after the general explanation.
        extra = alerts_text(kb, country, english)
        text = f"{extra}\n\n{text}" if extra.startswith("⚠️") else f"{text}\n\n{extra}"
    footer = pick(english, PERSON_ZH, PERSON_EN)
    return split_message(f"{text}\n\n{footer}")


def alerts_text(kb: Snapshot, country: str | None, english: bool) -> str:
    """The alerts in force for the person's country, or that there are none, or a question."""
    if not country or country in DOMESTIC:
        return pick(english, ALERT_ASK_ZH, ALERT_ASK_EN)
    live = kb.live_alerts(country)
    if not live:
        return pick(english, NO_ALERT_ZH, NO_ALERT_EN).format(country=country_name(country, english))
    return "\n".join(alert_line(a, english) for a in live[:3])


def embassy_contact(turn: Turn, kb: Snapshot) -> Outcome:
    """Missions for the person's country from the directory; ask for the country when unknown."""
    english, country = turn.english, turn.country
    if not country or country in DOMESTIC:
        turn.conversation.state = AWAITING_COUNTRY
        turn.conversation.context["pending"] = {"kind": "embassy_contact"}
        return Outcome([pick(english, ASK_COUNTRY_ZH, ASK_COUNTRY_EN)], handler="faq:embassy_contact")
    return Outcome(split_message(missions_text(kb, country, english)), handler="faq:embassy_contact")


def missions_text(kb: Snapshot, country: str, english: bool) -> str:
    _, missions = kb.country(country)
    name = country_name(country, english)
    if not missions:
        return pick(english, NO_MISSION_ZH, NO_MISSION_EN).format(country=name, hotline=hotline(english))
    missions.sort(key=lambda m: m.get("kind") != "embassy")
    cards = [mission_card(m, english) for m in missions[:3]]
    source = missions[0].get("source") or {}
    body = pick(english, MISSIONS_ZH, MISSIONS_EN).format(country=name) + "\n" + "\n".join(cards)
    note = pick(english, SOURCE_ZH, SOURCE_EN).format(title=source.get("title", ""), date=source.get("date", ""))
    return f"{body}\n\n{note}\n{hotline(english)}"


def _answer_text(entry: dict[str, Any], country: str | None, english: bool) -> str:
    overrides = entry.get("overrides") or {}
    chosen = overrides.get(country) if country else None
    answer = chosen or entry.get("answer") or {}
    return str(answer.get("en") if english and answer.get("en") else answer.get("zh", ""))


def _title(entry: dict[str, Any], english: bool) -> str:
    title = entry.get("title") or {}
    return str(title.get("en") if english and title.get("en") else title.get("zh", entry.get("slug")))
