"""What a handler sees (a Turn) and what it returns (an Outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.storage.store import ConversationState
from bot.wechat.messages import Inbound

if TYPE_CHECKING:
    from handlers.services import Services
    from knowledge.base import Snapshot
    from nlu.types import Understanding

EMERGENCY_INTENTS = (
    "emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing",
    "emergency_kidnap", "emergency_disaster", "emergency_death",
)

# Conversation states (issue 4 §8).
IDLE = "idle"
AWAITING_COUNTRY = "awaiting_country"
AWAITING_CHOICE = "awaiting_choice"
QUEUED = "queued"
WITH_OFFICER = "with_officer"
CLOSED = "closed"


@dataclass
class Turn:
    """One inbound message being handled, with the conversation it belongs to."""

    message: Inbound
    conversation: ConversationState
    services: Services
    nlu: Understanding | None = None
    kb_generation: int | None = None

    async def knowledge(self) -> Snapshot:
        """Published knowledge as of this turn (reloaded if it changed anywhere)."""
        return await self.services.kb.current(self.kb_generation)

    @property
    def text(self) -> str:
        """What the person wrote (or said, for voice), as they wrote it."""
        return self.message.text or ""

    @property
    def intent(self) -> str:
        """The routing key: the NLU intent for text, else the message kind."""
        if self.nlu is not None:
            return self.nlu.intent
        return self.message.kind

    @property
    def english(self) -> bool:
        """Answer in English when the person wrote English."""
        return self.conversation.language == "en"

    def sla(self, priority: int) -> timedelta:
        """How soon a case of ``priority`` must be claimed (BOT_SLA_MINUTES)."""
        return self.services.settings.sla(priority)

    @property
    def country(self) -> str | None:
        """The person's current country (conversation first, then their profile)."""
        return self.conversation.country or self.conversation.user_country


@dataclass
class Escalate:
    """A request to put the conversation in front of a duty officer."""

    priority: int
    reason: str
    case: dict[str, Any]
    sla: timedelta

    def as_record(self) -> dict[str, Any]:
        return {"priority": self.priority, "reason": self.reason, "case": self.case, "sla": self.sla}


@dataclass
class Outcome:
    """What a handler decided: replies in order, and side effects to save with them."""

    replies: list[str]
    handler: str
    escalation: Escalate | None = None
    user_update: dict[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    async def __call__(self, turn: Turn) -> Outcome: ...
