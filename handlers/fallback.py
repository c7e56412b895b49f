"""Out of scope or not understood: a short redirect with 12308; twice in a row, offer a person."""

from __future__ import annotations

from handlers.base import Outcome, Turn
from handlers.texts import hotline, pick

REDIRECT_ZH = "抱歉，这个问题我帮不上忙。我能解答护照、签证、公证等领事问题，紧急时告诉您该怎么做。\n{hotline}"
REDIRECT_EN = ("Sorry, I can't help with that. I answer consular questions (passports, visas, notarisation) and "
               "tell you what to do in an emergency.\n{hotline}")
OFFER_ZH = "看来我没能理解您的意思。回复“人工”，我为您转接值班人员；紧急情况请直接拨打电话。\n{hotline}"
OFFER_EN = ("It seems I'm not understanding you. Reply \"human\" and I'll put you in touch with a duty officer; "
            "in an emergency please call.\n{hotline}")


async def fallback(turn: Turn) -> Outcome:
    """Polite redirect; the second miss in a row offers a person."""
    misses = int(turn.conversation.context.get("fallbacks", 0)) + 1
    turn.conversation.context["fallbacks"] = misses
    if misses >= 2:
        text = pick(turn.english, OFFER_ZH, OFFER_EN)
    else:
        text = pick(turn.english, REDIRECT_ZH, REDIRECT_EN)
    return Outcome([text.format(hotline=hotline(turn.english))], handler="fallback")
