"""The bot's services outside the web server, for CLI commands (``nlu parse``, ``kb ...``)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker, migrate
from handlers.services import Services


class Offline:
    """Migrated database, seeded knowledge base and loaded NLU, as the server would have them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.services: Services | None = None

    async def __aenter__(self) -> Offline:
        await migrate(self.settings.database_url)
        self.engine = make_engine(self.settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.services = await Services.load(self.settings, self.sessions)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.services is not None:
            await self.services.close()
        if self.engine is not None:
            await self.engine.dispose()

    async def understand(self, text: str) -> dict[str, Any]:
        """The CLI's JSON for one message, with ``faq`` = the entry the bot would answer with."""
        assert self.services is not None
        result = await self.services.understand(text)
        data = result.as_json()
        data["faq"] = None
        if result.intent == "faq":
            match = (await self.services.kb.current()).match(text)
            data["faq"] = match.best
            data["faq_confident"] = match.confident
        return data
