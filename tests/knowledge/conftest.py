"""A knowledge-base database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.db import make_engine, make_sessionmaker, migrate


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """An empty, migrated SQLite database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"
    await migrate(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    await engine.dispose()
