"""The result of understanding one message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FALLBACK = "nlu_fallback"


@dataclass(frozen=True)
class Understanding:
    """Intent, confidence and entities for one message, and which engine produced them."""

    text: str
    intent: str
    confidence: float
    engine: str
    country: str | None = None
    foreign: bool | None = None
    language: str = "zh"
    entities: list[dict[str, Any]] = field(default_factory=list)
    safety_net: bool = False
    place_only: bool = False
    ranking: list[tuple[str, float]] = field(default_factory=list)
    # The knowledge base's closest entries for the same text, when the NLU worker ranked them with the
    # features it had computed anyway: (key of the matcher's model, [(slug, probability)…] best first).
    topics: tuple[str, list[tuple[str, float]]] | None = None

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON shape."""
        return {
            "text": self.text, "intent": self.intent, "confidence": round(self.confidence, 4),
            "country": self.country, "entities": self.entities, "engine": self.engine,
            "language": self.language, "safety_net": self.safety_net, "place_only": self.place_only,
        }
