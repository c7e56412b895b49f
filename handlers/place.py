"""Where the person is: location messages, a country given when asked, and the menu buttons."""

from __future__ import annotations

from handlers.base import AWAITING_COUNTRY, IDLE, QUEUED, Escalate, Outcome, Turn
from handlers.emergency import case_card, contact_lines, hints_of
from handlers.escalation import request_human
from handlers.faq import embassy_contact, missions_text
from handlers.fallback import fallback
from handlers.format import alert_line, country_name, split_message
from handlers.texts import hotline, pick
from knowledge.base import Snapshot
from nlu.geo import locate

UNKNOWN_PLACE_ZH = "没能识别这个位置。请直接告诉我您在哪个国家或城市。\n{hotline}"
UNKNOWN_PLACE_EN = "I couldn't place that location. Please tell me which country or city you are in.\n{hotline}"
GOT_PLACE_ZH = "收到您的位置：{country}。"
GOT_PLACE_EN = "Got your location: {country}."
HOW_HELP_ZH = "请告诉我需要什么帮助。"
HOW_HELP_EN = "Tell me how I can help."
STILL_QUEUED_ZH = "值班人员已收到您的情况，请保持手机畅通。"
STILL_QUEUED_EN = "The duty officer has your case; keep your phone on."
EMERGENCY_MENU_ZH = ("请直接告诉我发生了什么（例如：被抢、受伤、被拘留、联系不上家人），以及您在哪个国家或城市，"
                     "也可以发送位置。\n有生命危险请先拨打当地报警电话。\n{hotline}")
EMERGENCY_MENU_EN = ("Tell me what happened (robbed, injured, detained, can't reach a relative…) and which country or "
                     "city you are in, or send your location.\nIf a life is in danger call the local police first.\n"
                     "{hotline}")


async def location(turn: Turn) -> Outcome:
    """A location message: the country it is in becomes the person's country."""
    msg = turn.message
    code = locate(msg.latitude, msg.longitude) if msg.latitude is not None and msg.longitude is not None else None
    if code is None:
        text = pick(turn.english, UNKNOWN_PLACE_ZH, UNKNOWN_PLACE_EN).format(hotline=hotline(turn.english))
        return Outcome([text], handler="location")
    turn.conversation.country = code
    outcome = await continue_pending(turn)
    if outcome is None:
        kb = await turn.knowledge()
        outcome = Outcome(split_message(place_text(turn, kb, code)), handler="location")
    outcome.user_update["country"] = code
    return outcome


def place_text(turn: Turn, kb: Snapshot, code: str) -> str:
    """Acknowledge a place: its local numbers and mission, or the domestic note."""
    english = turn.english
    name = country_name(code, english)
    lines = [pick(english, GOT_PLACE_ZH, GOT_PLACE_EN).format(country=name)]
    lines.extend(contact_lines(kb, code, english, hints_of(turn)))
    lines.append(pick(english, HOW_HELP_ZH, HOW_HELP_EN))
    return "\n".join(lines)


async def place_statement(turn: Turn) -> Outcome:
    """ "我在巴黎" on its own: the local numbers and mission there, and what can I do for you."""
    code = turn.country
    if not code:
        return await fallback(turn)
    kb = await turn.knowledge()
    return Outcome(split_message(place_text(turn, kb, code)), handler="place")


async def country_given(turn: Turn) -> Outcome:
    """Awaiting a country and the message names one: finish what was waiting for it."""
    outcome = await continue_pending(turn)
    if outcome is not None:
        return outcome
    turn.conversation.state = IDLE
    return await fallback(turn)


async def continue_pending(turn: Turn) -> Outcome | None:
    """Complete the emergency or embassy question that was waiting for a country."""
    pending = turn.conversation.context.pop("pending", None)
    if turn.conversation.state == AWAITING_COUNTRY:
        turn.conversation.state = IDLE
    if not pending or not turn.country:
        return None
    kb = await turn.knowledge()
    english = turn.english
    if pending.get("kind") == "embassy_contact":
        return Outcome(split_message(missions_text(kb, turn.country, english)), handler="faq:embassy_contact")
    intent = str(pending.get("intent"))
    playbook = kb.playbooks.get(intent) or {"priority": 1}
    turn.conversation.state = QUEUED
    lines = contact_lines(kb, turn.country, english, hints_of(turn))
    lines.extend(alert_line(a, english) for a in kb.live_alerts(turn.country)[:1])
    lines.append(pick(english, STILL_QUEUED_ZH, STILL_QUEUED_EN))
    priority = int(playbook.get("priority", 1))
    card = case_card(turn, playbook, turn.country)
    # Only where they are is new: what they said and the NLU stay as the emergency recorded them.
    update = {key: card[key] for key in ("country", "country_name", "location", "summary") if card.get(key)}
    return Outcome(["\n".join(lines)], handler="emergency:country",
                   escalation=Escalate(priority=priority, reason=intent, sla=turn.sla(priority), case=update))


async def menu(turn: Turn) -> Outcome:
    """Menu buttons (CLICK events)."""
    key = (turn.message.event_key or "").upper()
    if key == "HUMAN":
        return await request_human(turn)
    if key == "EMBASSY_CONTACT":
        return embassy_contact(turn, await turn.knowledge())
    if key == "EMERGENCY_HELP":
        text = pick(turn.english, EMERGENCY_MENU_ZH, EMERGENCY_MENU_EN).format(hotline=hotline(turn.english))
        return Outcome([text], handler="menu")
    return await fallback(turn)

