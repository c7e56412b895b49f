"""Run units of work (plain functions over a SQLAlchemy ``Connection``) on the configured database.

On SQLite every unit goes to one writer thread that owns one stdlib ``sqlite3`` connection and
commits whatever units are waiting in a single transaction (group commit): one fsync and one
thread hand-off per batch instead of several per message, while each caller still waits for its
own commit. If any unit fails, the batch is rolled back and each unit is run again on its own, so
only the failing one fails (units only read and write the database, so running one again is safe).

On PostgreSQL each unit is one transaction through the async engine (``run_sync``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import is_sqlite

log = logging.getLogger(__name__)
T = TypeVar("T")
Unit = Callable[[Connection], Any]
MAX_BATCH = 256


class Runner(Protocol):
    """Runs one unit of work in its own transaction and returns its result."""

    async def run(self, unit: Callable[[Connection], T]) -> T: ...

    async def close(self) -> None: ...


class AsyncRunner:
    """PostgreSQL (and anything else): a transaction on the async engine per unit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def run(self, unit: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(unit)

    async def close(self) -> None:
        return None


class GroupCommitRunner:
    """SQLite: one writer thread, many units per transaction."""

    def __init__(self, url: str) -> None:
        self.engine = writer_engine(url)
        self._jobs: queue.SimpleQueue[tuple[Unit, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="sqlite-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.units = 0

    async def run(self, unit: Callable[[Connection], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((unit, future))
        return await future

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 30)
        self.engine.dispose()

    def _work(self) -> None:
        with self.engine.connect() as connection:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)  # finish this batch, then stop
                        break
                    batch.append(more)
                self._commit(connection, batch)

    def _commit(self, connection: Connection, batch: list[tuple[Unit, asyncio.Future[Any]]]) -> None:
        results = run_batch(connection, [unit for unit, _ in batch])
        self.batches += 1
        self.units += len(batch)
        for (_, future), (ok, value) in zip(batch, results):
            future.get_loop().call_soon_threadsafe(_settle, future, ok, value)


def run_batch(connection: Connection, units: list[Unit]) -> list[tuple[bool, Any]]:
    """Run ``units`` in one transaction: (True, result) each; if any fails (or the commit does), the batch is
    rolled back and each unit is run again in a transaction of its own, so only the failing one fails."""
    try:
        with connection.begin():
            return [(True, unit(connection)) for unit in units]
    except Exception:
        return [_alone(connection, unit) for unit in units]


def _alone(connection: Connection, unit: Unit) -> tuple[bool, Any]:
    try:
        with connection.begin():
            return True, unit(connection)
    except Exception as exc:  # the unit's own error goes back to its caller only
        return False, exc


def writer_engine(url: str) -> Any:
    """A synchronous engine for SQLite's writer: stdlib driver, one connection per thread, BEGIN IMMEDIATE."""
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_engine(sync_url, poolclass=_single_pool(), connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (pysqlite's own transaction handling
    # would break savepoints), then set the same pragmas as the async engine.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _single_pool() -> Any:
    from sqlalchemy.pool import SingletonThreadPool

    return SingletonThreadPool


async def make_runner(url: str, engine: AsyncEngine, *, writer_process: bool = False) -> Runner:
    """PostgreSQL: the async engine. SQLite: a writer process (``writer_process``; see bot/storage/writer.py)
    or a writer thread."""
    if not is_sqlite(url):
        return AsyncRunner(engine)
    if not writer_process:
        return GroupCommitRunner(url)
    from bot.storage.writer import ProcessRunner

    runner = ProcessRunner(url)
    await runner.start()
    return runner
