"""Engine and session factory; SQLite gets WAL, foreign keys and a single writer connection."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATING = threading.Lock()  # Alembic's context is module-global: one migration at a time in a process


def is_sqlite(url: str) -> bool:
    """True for any SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite, one connection (one writer) with WAL and foreign keys on."""
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        # One connection avoids writers fighting over SQLite's lock (see perf-baselines.md).
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=30)
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at this package's migrations and ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate_sync(url: str) -> None:
    """Create or upgrade the schema to the newest migration (blocking)."""
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
    with _MIGRATING:
        command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Create or upgrade the schema from async code (Alembic runs its own loop in a thread)."""
    await asyncio.to_thread(migrate_sync, url)
