"""The routing table: (conversation state, intent) → handler, first match wins."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from bot.storage.store import ConversationState
from bot.wechat.messages import Inbound
from handlers.base import Handler, Outcome, Turn
from handlers.fallback import fallback
from handlers.services import Services
from handlers.system import media, silent, unrecognised_voice, welcome

ANY = "*"
SILENT_EVENTS = ("event:unsubscribe", "event:location", "event:view", "event:templatesendjobfinish")
MEDIA = ("image", "video", "shortvideo", "link", "unknown")


@dataclass(frozen=True)
class Route:
    """One row of the table; ``ANY`` matches every state or intent."""

    states: str | Collection[str]
    intents: str | Collection[str]
    handler: Handler

    def matches(self, state: str, intent: str) -> bool:
        return _match(self.states, state) and _match(self.intents, intent)


def _match(pattern: str | Collection[str], value: str) -> bool:
    if pattern == ANY:
        return True
    if isinstance(pattern, str):
        return pattern == value
    return value in pattern


ROUTES: tuple[Route, ...] = (
    Route(ANY, "event:subscribe", welcome),
    Route(ANY, SILENT_EVENTS, silent),
    Route(ANY, "voice", unrecognised_voice),
    Route(ANY, MEDIA, media),
    Route(ANY, ANY, fallback),
)


def route(turn: Turn, routes: tuple[Route, ...] = ROUTES) -> Handler:
    """The first handler whose row matches the turn's state and intent."""
    state, intent = turn.conversation.state, turn.intent
    for row in routes:
        if row.matches(state, intent):
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

    async def make_turn(self, msg: Inbound, conversation: ConversationState) -> Turn:
        """Classify the message's text (if any) and attach it to the conversation."""
        turn = Turn(message=msg, conversation=conversation, services=self.services)
        if msg.msg_type in ("text", "voice", "link") and msg.text and msg.msg_type != "link":
            turn.nlu = await self.services.understand(msg.text)
            if turn.nlu.language:
                conversation.language = turn.nlu.language
        return turn

    async def respond(self, turn: Turn) -> Outcome:
        """Route the turn and run its handler."""
        handler = route(turn)
        outcome = await handler(turn)
        if outcome.handler != "fallback":
            turn.conversation.context.pop("fallbacks", None)
        return outcome

    def health(self) -> dict[str, str]:
        return self.services.health()

    async def close(self) -> None:
        await self.services.close()

    def describe(self) -> dict[str, Any]:
        return {"routes": len(ROUTES)}
