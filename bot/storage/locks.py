"""Locks across bot processes: the per-user lock held while one message of that user is handled, and
``process_lock`` for one-at-a-time jobs (token refresh, knowledge-base seeding).

In every process an ``asyncio.Lock`` per user (FIFO, so a process handles one user's messages in the order
it started them). On PostgreSQL also a session-level advisory lock ``(USER_LOCKS, user id)``, so two bot
processes never handle messages of one user at the same time. All of a process's advisory locks live on
one dedicated connection (autocommit, outside the pool), taken with ``pg_try_advisory_lock`` and a short
backoff so a wait for one user never blocks another. If that connection dies its locks die with it, which
is also what frees the locks of a crashed process at once; the pipeline's ordering check (earlier messages
of the user answered first) does not rely on the lock alone.

SQLite has one writer: run one process (several need PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from bot.errors import LingbaoError
from bot.storage.db import is_sqlite

log = logging.getLogger(__name__)

# First keys of the two-key advisory locks (a separate key space from the one-key migration lock 730308).
USER_LOCKS = 730309
TOKEN_LOCKS = 730310
SEED_LOCKS = 730311
MAX_BACKOFF = 0.05
RELEASES_KEPT = 60.0  # seconds a user's last release is remembered (``untouched_since`` answers for less)


class LockTimeout(LingbaoError):
    """The user's lock stayed held by another process for longer than allowed."""


def token_lock_key(app_id: str) -> int:
    """The second key of the advisory lock that serialises refreshing ``app_id``'s access token."""
    return zlib.crc32(app_id.encode()) - 2**31  # a signed 32-bit int, as pg_advisory_xact_lock(int, int) wants


@contextlib.asynccontextmanager
async def process_lock(sessions: async_sessionmaker[AsyncSession], space: int, key: int = 0) -> AsyncIterator[None]:
    """Run the block in one process at a time: on PostgreSQL a transaction holding the advisory lock
    ``(space, key)`` stays open around it (the lock goes with the transaction, also if this process dies);
    on SQLite nothing (one process)."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "postgresql":
        yield
        return
    async with sessions.begin() as guard:
        await guard.execute(select(func.pg_advisory_xact_lock(space, key)))
        yield


class _Advisory:
    """Session-level advisory locks of this process, on one dedicated connection."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._connection: AsyncConnection | None = None
        self._io = asyncio.Lock()  # one statement at a time on the connection
        self.generation = 0  # bumped whenever the connection is replaced: locks on the old one are gone

    async def try_lock(self, key: int) -> int | None:
        """Take the lock if free; the connection's generation if taken, None if held elsewhere.

        A connection found dead (the server restarted, a proxy cut it) is replaced once; the locks it held
        are gone with it, and their holders' unlocks are skipped (see ``generation``)."""
        async with self._io:
            try:
                return await self._try_lock(key)
            except Exception:
                await self._drop()
                log.warning("the advisory-lock connection was lost; reconnecting", exc_info=True)
            try:
                return await self._try_lock(key)
            except Exception:
                await self._drop()
                raise

    async def _try_lock(self, key: int) -> int | None:
        connection = await self._connect()
        taken = (await connection.execute(select(func.pg_try_advisory_lock(USER_LOCKS, key)))).scalar()
        return self.generation if taken else None

    async def unlock(self, key: int, generation: int) -> None:
        async with self._io:
            if self._connection is None or generation != self.generation:
                return  # that connection is gone, and the lock with it
            try:
                await self._connection.execute(select(func.pg_advisory_unlock(USER_LOCKS, key)))
            except Exception:  # the lock goes with the connection; the next user reconnects
                log.warning("advisory unlock failed; dropping the lock connection", exc_info=True)
                await self._drop()

    async def close(self) -> None:
        async with self._io:
            await self._drop()
        await self.engine.dispose()

    async def _connect(self) -> AsyncConnection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            self._connection = await self.engine.connect()
            self.generation += 1
        return self._connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


class UserLocks:
    """``async with locks.hold(user_id)``: this process's and (PostgreSQL) every process's lock on a user."""

    def __init__(self, url: str | None = None, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._local: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}  # holders and waiters per user, to drop unused locks
        self._released: dict[int, float] = {}  # user → when this process last let go of their lock (monotonic)
        self._swept = time.monotonic()
        self._advisory = _Advisory(url) if url and not is_sqlite(url) else None

    @property
    def shared(self) -> bool:
        """True when the lock also holds across processes."""
        return self._advisory is not None

    @contextlib.asynccontextmanager
    async def hold(self, user_id: int) -> AsyncIterator[None]:
        local = self._local.setdefault(user_id, asyncio.Lock())
        self._users[user_id] = self._users.get(user_id, 0) + 1
        try:
            async with local:
                try:
                    if self._advisory is None:
                        yield
                        return
                    generation = await self._acquire(user_id)
                    try:
                        yield
                    finally:
                        # Shielded: a cancelled handler must still give the lock back.
                        await asyncio.shield(self._advisory.unlock(user_id, generation))
                finally:
                    self._note_release(user_id)
        finally:
            self._users[user_id] -= 1
            if self._users[user_id] == 0:
                del self._users[user_id], self._local[user_id]

    def untouched_since(self, user_id: int, since: float) -> bool:
        """True when nobody else has held the user's lock since ``since`` (``time.monotonic()``), as seen from
        this process: whatever holders before then wrote, they had written by then. Asked by the lock's holder.
        Only for a recent ``since``, and never when the lock is shared (other processes are not seen here)."""
        if self.shared or time.monotonic() - since > RELEASES_KEPT / 2:
            return False
        return self._released.get(user_id, float("-inf")) < since

    def _note_release(self, user_id: int) -> None:
        now = time.monotonic()
        self._released[user_id] = now
        if now - self._swept > RELEASES_KEPT:  # forget old releases now and then; untouched_since never needs them
            self._swept = now
            self._released = {user: at for user, at in self._released.items() if now - at < RELEASES_KEPT}

    async def _acquire(self, user_id: int) -> int:
        assert self._advisory is not None
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while (generation := await self._advisory.try_lock(user_id)) is None:
            if time.monotonic() > deadline:
                raise LockTimeout(f"user {user_id} stayed locked by another process for {self.timeout:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
        return generation

    async def close(self) -> None:
        if self._advisory is not None:
            await self._advisory.close()
