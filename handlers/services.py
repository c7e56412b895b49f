"""What handlers may use: the NLU, knowledge base, country directory and settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from nlu.engine import NLU, RasaClient
from nlu.types import Understanding


@dataclass
class Services:
    """Shared, read-mostly services built once per process."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    nlu: NLU
    http: aiohttp.ClientSession | None = None

    @classmethod
    async def load(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Services:
        """Load the NLU (training the built-in model if its data changed) and, if chosen, connect Rasa."""
        http = aiohttp.ClientSession() if settings.nlu_engine == "rasa" else None
        rasa = RasaClient(http, settings.rasa_url, settings.rasa_timeout) if http is not None else None
        nlu = await asyncio.to_thread(NLU.load, settings.data_dir, settings.var_dir / "nlu", rasa=rasa)
        return cls(settings=settings, sessions=sessions, nlu=nlu, http=http)

    async def understand(self, text: str) -> Understanding:
        """Intent and country of ``text``."""
        return await self.nlu.understand(text)

    def health(self) -> dict[str, str]:
        engine = self.settings.nlu_engine
        return {"nlu": f"ok ({engine}, model {self.nlu.model.key})"}

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
