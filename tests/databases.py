"""The test databases: a fresh SQLite file or a fresh PostgreSQL database per test, and direct reads of either.

PostgreSQL comes from ``LINGBAO_TEST_PG_URL`` (``scripts/test`` starts a throwaway cluster and sets it). One
database is migrated once per test session and used as the template of every test's own database, which
``CREATE DATABASE … TEMPLATE`` copies in a few milliseconds; each test's database is dropped after it.
Without the variable PostgreSQL tests are skipped, or fail when ``LINGBAO_REQUIRE_PG=1`` (CI).

Tests read the bot's database as an operator would, with plain SQL: SQLite through ``sqlite3``, PostgreSQL
through asyncpg on a private event loop in a background thread (so a blocking helper can be called from
inside an async test). ``?`` placeholders work on both.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from bot.storage.db import migrate_sync

T = TypeVar("T")
PG_URL_VARIABLE = "LINGBAO_TEST_PG_URL"


def pg_url() -> str:
    """The PostgreSQL server the tests may use (an SQLAlchemy asyncpg URL), or empty."""
    return os.environ.get(PG_URL_VARIABLE, "")


def pg_required() -> bool:
    return os.environ.get("LINGBAO_REQUIRE_PG") == "1"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _dsn(url: str) -> str:
    """An SQLAlchemy URL as a libpq-style DSN for asyncpg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Loop:
    """An event loop in a daemon thread; ``run`` blocks the caller until a coroutine finishes there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-db-reader", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class PostgresServer:
    """Creates and drops databases on the test server and reads them."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._loop = _Loop()
        self._connections: dict[str, asyncpg.Connection] = {}
        self.session = secrets.token_hex(4)
        self.template = f"lingbao_tpl_{self.session}"
        self._template_ready = False
        self._lock = threading.Lock()

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(_dsn(self.url_for(self.url.database or "postgres")))
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        self._loop.run(run())

    def fresh_database(self) -> str:
        """A new database with the migrated schema; returns its SQLAlchemy URL."""
        with self._lock:
            if not self._template_ready:
                self._admin(f'CREATE DATABASE "{self.template}"')
                # Alembic's env runs its own event loop: give it a thread without one.
                failure: list[BaseException] = []

                def migrate() -> None:
                    try:
                        migrate_sync(self.url_for(self.template))
                    except BaseException as exc:  # handed to the caller below
                        failure.append(exc)

                worker = threading.Thread(target=migrate)
                worker.start()
                worker.join()
                if failure:
                    raise failure[0]
                self._template_ready = True
        name = f"lingbao_t_{self.session}_{secrets.token_hex(4)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self.url_for(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        connection = self._connections.pop(name or "", None)
        if connection is not None:
            self._loop.run(connection.close())
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in list(self._connections):
            self._loop.run(self._connections.pop(name).close())
        if self._template_ready:
            self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def rows(self, url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._loop.run(self._rows(url, _numbered(sql), args))

    def execute(self, url: str, sql: str, *args: Any) -> None:
        self._loop.run(self._execute(url, _numbered(sql), args))

    async def _connection(self, url: str) -> asyncpg.Connection:
        name = make_url(url).database or ""
        connection = self._connections.get(name)
        if connection is None or connection.is_closed():
            connection = await asyncpg.connect(_dsn(url))
            self._connections[name] = connection
        return connection

    async def _rows(self, url: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        connection = await self._connection(url)
        return [tuple(record) for record in await connection.fetch(sql, *args)]

    async def _execute(self, url: str, sql: str, args: tuple[Any, ...]) -> None:
        connection = await self._connection(url)
        await connection.execute(sql, *args)


_server: PostgresServer | None = None


def postgres() -> PostgresServer:
    """The session's PostgreSQL server (created on first use)."""
    global _server
    if _server is None:
        _server = PostgresServer(pg_url())
    return _server


def close_postgres() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run a query on the bot's database (SQLite or PostgreSQL) and return plain tuples."""
    if is_postgres(url):
        return postgres().rows(url, sql, *args)
    with sqlite3.connect(make_url(url).database or "") as conn:
        return list(conn.execute(sql, args))


def execute(url: str, sql: str, *args: Any) -> None:
    """Run a statement on the bot's database and commit it."""
    if is_postgres(url):
        postgres().execute(url, sql, *args)
        return
    with sqlite3.connect(make_url(url).database or "") as conn:
        conn.execute(sql, args)


_PLACEHOLDER = re.compile(r"'[^']*'|\"[^\"]*\"|\?")


def _numbered(sql: str) -> str:
    """``?`` placeholders (outside quotes) as PostgreSQL's ``$1, $2, …``."""
    counter = iter(range(1, 1000))
    return _PLACEHOLDER.sub(lambda m: f"${next(counter)}" if m.group(0) == "?" else m.group(0), sql)
