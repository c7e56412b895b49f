"""Greetings, thanks and goodbyes: short, warm, and a reminder of what Lingbao can do."""

from __future__ import annotations

from handlers.base import Outcome, Turn
from handlers.texts import CAPABILITIES_EN, CAPABILITIES_ZH, hotline, pick

GREET_ZH = "您好！" + CAPABILITIES_ZH + "\n请直接告诉我发生了什么、您在哪个国家。"
GREET_EN = "Hello! " + CAPABILITIES_EN + "\nTell me what happened and which country you are in."
THANK_ZH = "不客气，注意安全。还有需要随时发消息给我。"
THANK_EN = "You're welcome. Stay safe, and write any time."
GOODBYE_ZH = "再见，祝您平安。遇到紧急情况请先拨打当地报警电话。\n{hotline}"
GOODBYE_EN = "Goodbye and stay safe. In an emergency call the local police first.\n{hotline}"


async def smalltalk(turn: Turn) -> Outcome:
    """Answer greet / thank / goodbye."""
    english = turn.english
    if turn.intent == "greet":
        text = pick(english, GREET_ZH, GREET_EN)
    elif turn.intent == "thank":
        text = pick(english, THANK_ZH, THANK_EN)
    else:
        text = pick(english, GOODBYE_ZH, GOODBYE_EN).format(hotline=hotline(english))
    return Outcome([text], handler="smalltalk")
