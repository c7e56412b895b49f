"""Emergencies: the first reply says what to do now; then what the embassy can do; then a person.

Each emergency intent has a playbook in the knowledge base (opening, steps, follow-up, priority);
this module only composes it with the local numbers and the mission's duty phone for the
person's country, and asks where they are when that is not known.
"""

from __future__ import annotations

from typing import Any

from handlers.base import AWAITING_COUNTRY, QUEUED, Escalate, Outcome, Turn
from handlers.escalation import queue_line
from handlers.format import alert_line, country_name, duty_line, local_numbers, pick_mission, split_message
from handlers.texts import hotline, pick
from knowledge.base import Snapshot
from nlu.geo import DOMESTIC

# WeChat refuses a passive text reply over 2048 bytes; keep room for the XML around it.
PASSIVE_BYTES = 2000
SAFETY = {1: "可能危及生命（据来信判断）", 2: "未知"}

ASK_WHERE_ZH = "请告诉我您在哪个国家或城市（或直接发送位置），我把当地报警和急救电话发给您。"
ASK_WHERE_EN = "Tell me which country or city you are in (or send your location) and I'll send the local emergency numbers."
QUEUED_ZH = "已为您通知值班人员，请保持手机畅通，也可以在这里继续说明情况。"
QUEUED_EN = "A duty officer has been alerted. Keep your phone on; you can keep writing here."
STEPS_ZH = "现在请："
STEPS_EN = "Do this now:"
UNKNOWN_NUMBERS_ZH = "我们暂未核实{country}的报警电话，请先拨打下面的12308。"
UNKNOWN_NUMBERS_EN = "We have no checked local emergency number for {country} yet; call 12308 below first."
DOMESTIC_ZH = "12308和使领馆的领事保护服务于在外国的中国公民；您在{country}，请直接拨打当地紧急电话。"
DOMESTIC_EN = ("12308 and the embassies help Chinese citizens in foreign countries; in {country} call the "
               "local emergency number.")


async def emergency(turn: Turn) -> Outcome:
    """The emergency first reply, the follow-up, and an escalation with a case card."""
    intent = turn.intent
    kb = await turn.knowledge()
    playbook = kb.playbooks.get(intent)
    if playbook is None:  # an ops mistake must never cost the person their first reply
        playbook = {"priority": 1, "answer": {}, "steps": {}, "followup": {}, "title": {"zh": intent, "en": intent}}
    country = turn.country
    priority = int(playbook.get("priority", 2))
    alerted = pick(turn.english, QUEUED_ZH, QUEUED_EN)
    hints = hints_of(turn)
    queued = "\n" + await queue_line(turn, priority, alerted)
    first = first_reply(kb, playbook, country, turn.english, hints) + queued
    followups = followup_messages(playbook, turn.english)
    if len(first.encode()) > PASSIVE_BYTES:  # a long safety alert must not cost the first reply
        first = first_reply(kb, playbook, country, turn.english, hints, alerts=False) + queued
        followups = [line_of_alerts(kb, country, turn.english)] + followups
    replies = [first] + followups
    conversation = turn.conversation
    conversation.context["queue_priority"] = min(priority, int(conversation.context.get("queue_priority", 3)))
    if country:
        conversation.state = QUEUED
        conversation.context.pop("pending", None)
    else:
        conversation.state = AWAITING_COUNTRY
        conversation.context["pending"] = {"kind": "emergency", "intent": intent}
    conversation.context["last_emergency"] = intent
    return Outcome(replies, handler="emergency", escalation=Escalate(
        priority=priority, reason=intent, sla=turn.sla(priority), case=case_card(turn, playbook, country)))


def first_reply(kb: Snapshot, playbook: dict[str, Any], country: str | None, english: bool,
                hints: list[str], *, alerts: bool = True) -> str:
    """Opening, local numbers, duty phone, 12308, the steps, a live safety alert, and where they stand."""
    title = _text(playbook.get("title"), english)
    lines = [f"【{title}】" if not english else f"[{title}]"]
    opening = _text(playbook.get("answer"), english)
    if opening:
        lines.append(opening.strip())
    lines.extend(contact_lines(kb, country, english, hints))
    steps = _steps(playbook, english)
    if steps:
        lines.append(pick(english, STEPS_ZH, STEPS_EN))
        lines.extend(f"{i}. {step}" for i, step in enumerate(steps, 1))
    if alerts:
        lines.extend(alert_line(a, english) for a in kb.live_alerts(country)[:1])
    if not country:
        lines.append(pick(english, ASK_WHERE_ZH, ASK_WHERE_EN))
    return "\n".join(lines)


def contact_lines(kb: Snapshot, country: str | None, english: bool, hints: list[str]) -> list[str]:
    """Local emergency numbers and the mission's duty phone when known, and always 12308."""
    lines: list[str] = []
    if country:
        emergency, missions = kb.country(country)
        name = country_name(country, english)
        if country in DOMESTIC:
            lines.append(pick(english, DOMESTIC_ZH, DOMESTIC_EN).format(country=name))
        numbers = local_numbers(emergency, country, english)
        lines.append(numbers or pick(english, UNKNOWN_NUMBERS_ZH, UNKNOWN_NUMBERS_EN).format(country=name))
        mission = pick_mission(missions, hints)
        duty = duty_line(mission, english)
        if duty:
            lines.append(duty)
    lines.append(hotline(english))
    return lines


def line_of_alerts(kb: Snapshot, country: str | None, english: bool) -> str:
    return "\n".join(alert_line(a, english) for a in kb.live_alerts(country)[:1])


def followup_messages(playbook: dict[str, Any], english: bool) -> list[str]:
    """What the embassy can and cannot do, after the first reply (at most two messages)."""
    followup = _text(playbook.get("followup"), english)
    if not followup:
        return []
    return split_message(f"{followup.strip()}\n\n{hotline(english)}", parts=2)


def case_card(turn: Turn, playbook: dict[str, Any], country: str | None) -> dict[str, Any]:
    """What the duty officer sees first."""
    conversation = turn.conversation
    location = None
    if conversation.latitude is not None and conversation.longitude is not None:
        location = {"lat": conversation.latitude, "lon": conversation.longitude,
                    "label": conversation.location_label}
    priority = int(playbook.get("priority", 2))
    return {
        "type": turn.intent,
        "country": country,
        "country_name": country_name(country, False) if country else None,
        "location": location,
        "said": turn.text[:500],
        "safety": SAFETY.get(priority, "未知"),
        "summary": f"{_text(playbook.get('title'), False)} · {country_name(country, False) or '地点未知'}",
        "language": conversation.language,
        "nlu": {"intent": turn.intent, "confidence": round(turn.nlu.confidence, 3) if turn.nlu else None,
                "safety_net": bool(turn.nlu and turn.nlu.safety_net)},
    }


def hints_of(turn: Turn) -> list[str]:
    hints = [turn.text.lower()]
    if turn.conversation.location_label:
        hints.append(turn.conversation.location_label.lower())
    if turn.nlu:
        hints.extend(str(e.get("value", "")) for e in turn.nlu.entities)
    return hints


def _text(value: Any, english: bool) -> str:
    if not isinstance(value, dict):
        return ""
    return str(value.get("en") if english and value.get("en") else value.get("zh") or "")


def _steps(playbook: dict[str, Any], english: bool) -> list[str]:
    steps = playbook.get("steps") or {}
    chosen = steps.get("en") if english and steps.get("en") else steps.get("zh")
    return [str(s) for s in chosen or []]
