"""A person asked for a person: queue the conversation for a duty officer (priority 3)."""

from __future__ import annotations

import time

from handlers.base import IDLE, QUEUED, WITH_OFFICER, Escalate, Outcome, Turn
from handlers.format import country_name
from handlers.texts import hotline, pick

QUEUED_ZH = "好的，已为您转接值班人员，请在这里稍候，我们会尽快回复您。如情况紧急，请直接拨打电话。\n{hotline}"
QUEUED_EN = ("OK, I've asked a duty officer to take over. Please wait here; we'll reply as soon as we can. "
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
            "said": turn.text[:500], "safety": "未知",
            "summary": f"要求人工 · {country_name(country, False) or '地点未知'}",
            "language": conversation.language}
    queued = pick(english, QUEUED_ZH, QUEUED_EN).format(hotline=hotline(english))
    text = await queue_line(turn, 3, queued)
    conversation.context["queue_priority"] = 3
    return Outcome([text], handler="escalation",
                   escalation=Escalate(priority=3, reason="request_human", case=case, sla=turn.sla(3)))


async def relay(turn: Turn) -> Outcome:
    """A duty officer has the chat: the message is stored for them and the bot says nothing.

    An emergency detected mid-chat still raises the case's priority for the officer to see.
    """
    if turn.intent.startswith("emergency_"):
        kb = await turn.knowledge()
        playbook = kb.playbooks.get(turn.intent) or {"priority": 1}
        priority = int(playbook.get("priority", 1))
        return Outcome([], handler="relay", escalation=Escalate(
            priority=priority, reason=turn.intent, sla=turn.sla(priority),
            case={"type": turn.intent, "said": turn.text[:500], "alert": "emergency during officer chat"}))
    return Outcome([], handler="relay")


AHEAD_ZH = "您前面还有{ahead}位在等待。"
NEXT_ZH = "您是下一位。"
AHEAD_EN = "{ahead} people are ahead of you."
NEXT_EN = "You are next."
WAIT_ZH = "预计等待约{minutes}分钟。"
WAIT_EN = "Expected wait: about {minutes} min."
NOBODY_ZH = "目前没有值班人员在线，请立即拨打12308（+86-10-12308 或 +86-10-65612308），您的求助仍保留在队列中。"
NOBODY_EN = ("No duty officer is online right now: call 12308 now (+86-10-12308 or +86-10-65612308). "
             "Your request stays in the queue.")
NOTICE_EVERY = 60.0


async def queue_line(turn: Turn, priority: int, alerted: str = "") -> str:
    """``alerted`` and where the person stands (position, rough wait); or, when no officer is online,
    "call 12308 now" instead (saying an officer was alerted would not be true)."""
    english = turn.english
    if await turn.services.accounts.online_officers() == 0:
        return pick(english, NOBODY_ZH, NOBODY_EN)
    position = await turn.services.queue.position(turn.conversation.id, priority)
    if position.ahead:
        line = pick(english, AHEAD_ZH, AHEAD_EN).format(ahead=position.ahead)
    else:
        line = pick(english, NEXT_ZH, NEXT_EN)
    if position.wait_minutes:
        line += pick(english, WAIT_ZH, WAIT_EN).format(minutes=position.wait_minutes)
    turn.conversation.context["queue_notice"] = time.time()
    return f"{alerted}\n{line}" if alerted else line


async def waiting_update(turn: Turn) -> str | None:
    """A short position update for someone waiting, at most once a minute."""
    last = float(turn.conversation.context.get("queue_notice", 0))
    if time.time() - last < NOTICE_EVERY:
        return None
    return await queue_line(turn, int(turn.conversation.context.get("queue_priority", 3)))


RATED_ZH = "谢谢您的评分！还有需要随时发消息给我。"
RATED_EN = "Thank you for rating us. Write any time you need help."


def is_rating(turn: Turn) -> bool:
    """A bare 1–5 just after a case was closed."""
    return turn.text.strip().translate(str.maketrans("１２３４５", "12345")) in ("1", "2", "3", "4", "5")


async def rate(turn: Turn) -> Outcome:
    """Store the 1–5 rating on the case that was just closed; the bot answers normally again."""
    rating = int(turn.text.strip().translate(str.maketrans("１２３４５", "12345")))
    await turn.services.queue.rate(turn.conversation.id, rating)
    turn.conversation.state = IDLE
    return Outcome([pick(turn.english, RATED_ZH, RATED_EN)], handler="rating")
