"""The routing table: (conversation state, intent) → handler, first match wins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from bot.storage.store import ConversationState
from bot.wechat.messages import Inbound
from handlers.base import (AWAITING_CHOICE, AWAITING_COUNTRY, CLOSED, EMERGENCY_INTENTS, IDLE, QUEUED, WITH_OFFICER,
                           Handler, Outcome, Turn)
from handlers.emergency import emergency
from handlers.escalation import is_rating, rate, relay, request_human, waiting_update
from handlers.fallback import fallback
from handlers.faq import choose, faq, is_choice, unsure
from handlers.place import country_given, location, menu, place_statement
from handlers.services import Services
from handlers.smalltalk import smalltalk
from handlers.system import media, silent, unrecognised_voice, welcome
from nlu.types import Understanding

ANY = "*"
SILENT_EVENTS = ("event:unsubscribe", "event:location", "event:view", "event:templatesendjobfinish")
MEDIA = ("image", "video", "shortvideo", "link", "unknown")


@dataclass(frozen=True)
class Route:
    """One row of the table; ``ANY`` matches every state or intent."""

    states: str | Collection[str]
    intents: str | Collection[str]
    handler: Handler
    when: Callable[[Turn], bool] | None = None

    def matches(self, turn: Turn) -> bool:
        return (_match(self.states, turn.conversation.state) and _match(self.intents, turn.intent)
                and (self.when is None or self.when(turn)))


def _match(pattern: str | Collection[str], value: str) -> bool:
    if pattern == ANY:
        return True
    if isinstance(pattern, str):
        return pattern == value
    return value in pattern


def names_country(turn: Turn) -> bool:
    return bool(turn.nlu and turn.nlu.country)


def answers_where(turn: Turn) -> bool:
    """Names a place and is not itself a clear new emergency ("我在曼谷被打了" is one)."""
    nlu = turn.nlu
    if nlu is None or not nlu.country:
        return False
    clear_emergency = nlu.intent in EMERGENCY_INTENTS and (nlu.safety_net or nlu.confidence >= 0.5)
    return not clear_emergency


def place_only(turn: Turn) -> bool:
    return bool(turn.nlu and turn.nlu.place_only)


ROUTES: tuple[Route, ...] = (
    # Events and non-text messages.
    Route(ANY, "event:subscribe", welcome),
    Route(ANY, SILENT_EVENTS, silent),
    Route(ANY, "event:click", menu),
    Route(ANY, "location", location),
    # A duty officer has the chat: the bot stays quiet (an emergency still raises the case).
    Route(WITH_OFFICER, ANY, relay),
    # The answer to "where are you?" completes the waiting emergency instead of starting another.
    Route(AWAITING_COUNTRY, ANY, country_given, when=answers_where),
    # An emergency wins in any other state.
    Route(ANY, EMERGENCY_INTENTS, emergency),
    # Answers to the bot's own questions.
    Route(AWAITING_CHOICE, ANY, choose, when=is_choice),
    Route(CLOSED, ANY, rate, when=is_rating),
    Route(ANY, "voice", unrecognised_voice),
    Route(ANY, MEDIA, media),
    # Text by intent.
    Route(ANY, "request_human", request_human),
    Route(ANY, "faq", faq),
    Route(ANY, ("greet", "thank", "goodbye"), smalltalk),
    Route(ANY, "nlu_fallback", place_statement, when=place_only),
    Route(ANY, "nlu_fallback", unsure),
    Route(ANY, ANY, fallback),
)


def _names_china(turn: Turn) -> bool:
    """The place found is China itself, not said as where one is ("中国大使馆", but not "我在中国")."""
    entities = turn.nlu.entities if turn.nlu else []
    return turn.nlu is not None and turn.nlu.country == "CN" and not any(
        e.get("country") == "CN" and e.get("located") for e in entities)


def _classifiable(msg: Inbound) -> bool:
    """A message with text to classify (typed, or a voice message's recognition)."""
    return msg.msg_type in ("text", "voice") and bool(msg.text)


def route(turn: Turn, routes: tuple[Route, ...] = ROUTES) -> Handler:
    """The first handler whose row matches the turn's state and intent."""
    for row in routes:
        if row.matches(turn):
            return row.handler
    return fallback


class Brain:
    """Understands a message (NLU, country) and answers it through the routing table."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @classmethod
    async def load(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Brain:
        """Load the NLU engine, knowledge base and directory."""
        return cls(await Services.load(settings, sessions))

    def classify_early(self, msg: Inbound) -> asyncio.Future[Understanding | None] | None:
        """Start classifying the message's text now, so it overlaps loading the conversation (the text alone
        decides the understanding); None when there is nothing to classify. With the NLU worker, the future
        is the worker's own (queued for its next batch now; None in it: classify in the server); otherwise a
        task classifying here."""
        if not _classifiable(msg):
            return None
        text = msg.text or ""
        pending = self.services.nlu.submit(text)
        return pending if pending is not None else asyncio.ensure_future(self.services.understand(text))

    async def make_turn(self, msg: Inbound, conversation: ConversationState, kb_generation: int | None = None,
                        early: Awaitable[Understanding | None] | None = None) -> Turn:
        """Classify the message's text (if any; ``early`` is its classification already under way) and attach
        it to the conversation."""
        turn = Turn(message=msg, conversation=conversation, services=self.services, kb_generation=kb_generation)
        if _classifiable(msg):
            text = msg.text or ""
            understood = await early if early is not None else None
            turn.nlu = understood if understood is not None else await self.services.nlu.understand_here(text)
            conversation.language = turn.nlu.language
            if turn.nlu.country and (turn.nlu.foreign or (not conversation.country and not _names_china(turn))):
                # A foreign place always counts; home only when nothing better is known, and never
                # the word China itself (中国大使馆, 中国公民, 回中国 say nothing about where one is).
                conversation.country = turn.nlu.country
        return turn

    async def respond(self, turn: Turn) -> Outcome:
        """Route the turn and run its handler."""
        handler = route(turn)
        if turn.conversation.state == CLOSED and handler is not rate:
            turn.conversation.state = IDLE  # the case is over; the bot answers as usual
        outcome = await handler(turn)
        if turn.conversation.state == QUEUED and outcome.replies and outcome.handler not in ("emergency", "escalation"):
            update = await waiting_update(turn)
            if update:
                outcome.replies[-1] += "\n" + update
        if outcome.handler not in ("fallback", "unsure"):
            turn.conversation.context.pop("fallbacks", None)
        if turn.conversation.country and turn.conversation.country != turn.conversation.user_country:
            outcome.user_update.setdefault("country", turn.conversation.country)
        if turn.conversation.language != turn.conversation.user_language:
            outcome.user_update.setdefault("language", turn.conversation.language)
        return outcome

    def health(self) -> dict[str, str]:
        return self.services.health()

    async def close(self) -> None:
        await self.services.close()
