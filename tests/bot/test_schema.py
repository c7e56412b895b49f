"""The schema the migrations build is the one the models describe, and the hot path's lookups use its indexes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from bot.storage.db import migrate
from bot.storage.models import Base
from bot.storage.store import EARLIER_UNANSWERED

pytestmark = pytest.mark.databases


async def test_migrations_build_what_the_models_describe(db_url: str) -> None:
    await migrate(db_url)
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await engine.dispose()
    assert differences == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_looking_for_earlier_open_messages_reads_only_open_ones(db_url: str, tmp_path: Path) -> None:
    """Each message looks for its user's earlier unanswered ones: through the partial index of open inbound
    messages, not through the user's whole history."""
    await migrate(db_url)
    compiled = EARLIER_UNANSWERED.compile(dialect=sqlite.dialect())
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN " + str(compiled), (1, 10, "2026-01-01")).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "ix_messages_open_inbound" in details, details
