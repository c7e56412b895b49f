"""A person asked for a person: queue the conversation for a duty officer (priority 3)."""

from __future__ import annotations

from handlers.base import QUEUED, WITH_OFFICER, Escalate, Outcome, Turn
from handlers.emergency import SLA
from handlers.format import country_name
from handlers.texts import hotline, pick

QUEUED_ZH = "好的，已为您转接值班人员，请在这里稍候，我们会尽快回复您。\n如情况紧急，请直接拨打电话。\n{hotline}"
QUEUED_EN = ("OK, I've asked a duty officer to take over. Please wait here; we'll reply as soon as we can.\n"
             "If it is urgent, call now.\n{hotline}")
ALREADY_ZH = "您已在等待值班人员，请稍候。如情况紧急，请直接拨打电话。\n{hotline}"
ALREADY_EN = "You are already waiting for a duty officer. If it is urgent, call now.\n{hotline}"


async def request_human(turn: Turn) -> Outcome:
    """Create a waiting escalation and tell the person."""
    english = turn.english
    conversation = turn.conversation
    if conversation.state in (QUEUED, WITH_OFFICER):
        return Outcome([pick(english, ALREADY_ZH, ALREADY_EN).format(hotline=hotline(english))],
                       handler="escalation")
    conversation.state = QUEUED
    country = turn.country
    case = {"type": "request_human", "country": country,
            "country_name": country_name(country, False) if country else None,
            "said": turn.text[:500], "safety": "not known",
            "summary": f"要求人工 · {country_name(country, False) or '地点未知'}",
            "language": conversation.language}
    text = pick(english, QUEUED_ZH, QUEUED_EN).format(hotline=hotline(english))
    return Outcome([text], handler="escalation",
                   escalation=Escalate(priority=3, reason="request_human", case=case, sla=SLA[3]))


async def relay(turn: Turn) -> Outcome:
    """A duty officer has the chat: the message is stored for them and the bot says nothing.

    An emergency detected mid-chat still raises the case's priority for the officer to see.
    """
    if turn.intent.startswith("emergency_"):
        kb = await turn.knowledge()
        playbook = kb.playbooks.get(turn.intent) or {"priority": 1}
        priority = int(playbook.get("priority", 1))
        return Outcome([], handler="relay", escalation=Escalate(
            priority=priority, reason=turn.intent, sla=SLA[priority],
            case={"type": turn.intent, "said": turn.text[:500], "alert": "emergency during officer chat"}))
    return Outcome([], handler="relay")
