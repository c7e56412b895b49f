"""What handlers may use: the NLU, knowledge base, country directory and settings."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import Accounts
from bot.queue import Queue
from bot.settings import Settings
from bot.storage.locks import SEED_LOCKS, process_lock
from bot.storage.runner import Runner
from knowledge import seed
from knowledge.base import KnowledgeBase
from nlu.engine import NLU, RasaClient
from nlu.geo import locate
from nlu.worker import NLUWorker
from nlu.types import Understanding

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Shared, read-mostly services built once per process."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    nlu: NLU
    kb: KnowledgeBase
    queue: Queue
    accounts: Accounts
    http: aiohttp.ClientSession | None = None

    @classmethod
    async def load(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                   runner: Runner | None = None) -> Services:
        """Seed the knowledge base, load the NLU (training it if its data changed), connect Rasa if chosen."""
        await seed_knowledge(settings, sessions)
        http = aiohttp.ClientSession() if settings.nlu_engine == "rasa" else None
        rasa = RasaClient(http, settings.rasa_url, settings.rasa_timeout) if http is not None else None
        nlu = await asyncio.to_thread(NLU.load, settings.data_dir, settings.var_dir / "nlu", rasa=rasa)
        if settings.nlu_worker and rasa is None:
            nlu.worker = NLUWorker(settings.data_dir)
            await nlu.worker.start(nlu.model)
        kb = KnowledgeBase(sessions, settings.data_dir)
        if nlu.worker is not None:
            worker = nlu.worker
            kb.on_snapshot = lambda snapshot: worker.set_topics(snapshot.retriever.model)
        await kb.current()
        await asyncio.to_thread(locate, 0.0, 0.0)  # load the offline geocoder now, not on the first location
        return cls(settings=settings, sessions=sessions, nlu=nlu, kb=kb, queue=Queue(sessions, runner),
                   accounts=Accounts(sessions), http=http)

    async def understand(self, text: str) -> Understanding:
        """Intent and country of ``text``."""
        return await self.nlu.understand(text)

    def health(self) -> dict[str, str]:
        engine = self.settings.nlu_engine
        worker = self.nlu.worker
        where = "" if worker is None else f", worker pid {worker.pid}" if worker.pid else ", worker starting"
        return {"nlu": f"ok ({engine}, model {self.nlu.model.key}{where})"}

    async def close(self) -> None:
        await self.kb.close()
        if self.nlu.worker is not None:
            await self.nlu.worker.close()
        if self.http is not None:
            await self.http.close()


async def seed_knowledge(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> seed.SeedReport:
    """Create or upgrade seed entries and directory rows (idempotent; staff edits are kept)."""
    data = await asyncio.to_thread(seed.read, settings.data_dir)
    for problem in data.problems:
        log.error("knowledge seed problem: %s", problem)
    async with process_lock(sessions, SEED_LOCKS):  # processes starting together seed one after the other
        return await seed.apply(sessions, data)
