"""What handlers may use: the NLU, knowledge base, country directory and settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from nlu.types import FALLBACK, Understanding


@dataclass
class Services:
    """Shared, read-mostly services built once per process."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    async def load(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Services:
        return cls(settings=settings, sessions=sessions)

    async def understand(self, text: str) -> Understanding:
        """Intent and country of ``text``."""
        return Understanding(text=text, intent=FALLBACK, confidence=0.0, engine="none")

    def health(self) -> dict[str, str]:
        return {"nlu": "ok (none)"}

    async def close(self) -> None:
        return None
