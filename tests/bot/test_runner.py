"""Group commit: many units per transaction, each caller gets its own result, a failing unit fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from bot.storage.db import migrate
from bot.storage.runner import GroupCommitRunner


async def test_units_commit_together_and_fail_alone(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    await migrate(url)
    runner = GroupCommitRunner(url)

    def insert(n: int) -> object:
        def unit(conn: Connection) -> int:
            conn.execute(text("INSERT INTO kb_state (id, generation, updated_at) VALUES (:n, 0, '2026-01-01')"),
                         {"n": n})
            return n
        return unit

    def broken(conn: Connection) -> None:
        conn.execute(text("INSERT INTO kb_state (id, generation, updated_at) VALUES (999, 0, '2026-01-01')"))
        raise ValueError("this unit fails")

    try:
        results = await asyncio.gather(*(runner.run(insert(n)) for n in range(10, 60)), runner.run(broken),
                                       return_exceptions=True)
        assert results[:50] == list(range(10, 60))
        assert isinstance(results[50], ValueError)
        rows = await runner.run(lambda conn: conn.execute(text("SELECT id FROM kb_state ORDER BY id")).scalars().all())
        assert rows == list(range(10, 60)), "the failing unit's write was rolled back, nobody else's"
        assert runner.batches < runner.units, "several units shared a transaction"
        with pytest.raises(Exception):
            await runner.run(insert(10))  # duplicate key: an error for this caller only
    finally:
        await runner.close()
