"""The durable outbox: everything sent to a user outside a passive reply goes through here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import OutboxItem, User, utcnow
from bot.storage.store import due_filter
from bot.wechat.api import ERROR_TEXT, NetworkError, OutsideWindow, QuotaExceeded, WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 8
MAX_BACKOFF = 300.0


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 1, 2, 4 … capped at five minutes."""
    return min(MAX_BACKOFF, 2.0 ** max(attempt - 1, 0))


@dataclass(frozen=True)
class Claimed:
    id: int
    user_id: int
    openid: str
    payload: dict[str, object]
    attempts: int


class Outbox:
    """Sends due rows in order per user, with backoff on transient failures; survives restarts."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], api: WeChatAPI, *, poll: float = 0.5,
                 on_result: Callable[[str, int | None], None] | None = None) -> None:
        self.sessions = sessions
        self.api = api
        self.poll = poll
        self.on_result = on_result
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return from ``run`` (no query is cut off mid-way)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Drain until stopped; errors in one round are logged and the loop goes on."""
        while not self._stopping:
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # loop top: a database hiccup must not stop delivery for good
                log.exception("outbox round failed")
                sent = 0
            if sent == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()

    async def drain_once(self) -> int:
        """Send what is due now; returns how many rows were attempted."""
        heads = await self._due_heads(utcnow())
        claimed = [c for c in [await self._claim(row_id) for row_id in heads] if c is not None]
        if claimed:
            await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _due_heads(self, now: datetime) -> list[int]:
        """The oldest unsent row of each user, if it is due: keeps each user's messages in order."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(OutboxItem.id, OutboxItem.user_id, OutboxItem.status, OutboxItem.next_attempt_at,
                       OutboxItem.lease_until)
                .where(OutboxItem.status.in_(("pending", "sending")))
                .order_by(OutboxItem.id).limit(500)
            )
            heads: dict[int, int] = {}
            blocked: set[int] = set()
            for row in rows:
                if row.user_id in heads or row.user_id in blocked:
                    continue
                due = (row.status == "pending" and row.next_attempt_at <= now) or (
                    row.status == "sending" and row.lease_until is not None and row.lease_until < now)
                if due:
                    heads[row.user_id] = row.id
                else:
                    blocked.add(row.user_id)
            return list(heads.values())

    async def _claim(self, row_id: int) -> Claimed | None:
        now = utcnow()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(OutboxItem).where(OutboxItem.id == row_id, due_filter(now))
                .values(status="sending", lease_until=now + SEND_LEASE, attempts=OutboxItem.attempts + 1)
            )
            if not result.rowcount:
                return None
            row = (await session.execute(select(OutboxItem).where(OutboxItem.id == row_id))).scalar_one()
            return Claimed(row.id, row.user_id, row.openid, dict(row.payload), row.attempts)

    async def _deliver(self, item: Claimed) -> None:
        reserved = await self._reserve_quota(item.user_id)
        if reserved is not None:
            await self._finish(item, "failed", code=reserved, error=ERROR_TEXT[reserved] + " (not sent)")
            return
        try:
            await self.api.send(item.openid, item.payload)  # type: ignore[arg-type]
        except (OutsideWindow, QuotaExceeded) as exc:
            # WeChat knows best: close the window (45015) or empty the quota (45047) here too, so the
            # next message fails at once with the same reason instead of being sent.
            await self._close_window(item.user_id, window=isinstance(exc, OutsideWindow))
            await self._finish(item, "failed", code=exc.code, error=ERROR_TEXT[exc.code])
        except (NetworkError, WeChatAPIError) as exc:
            await self._refund_quota(item.user_id)
            code = getattr(exc, "code", None)
            if getattr(exc, "transient", False) and item.attempts < MAX_ATTEMPTS:
                await self._retry(item, code, str(exc))
            else:
                await self._finish(item, "failed", code=code, error=ERROR_TEXT.get(code or 0, str(exc))[:500])
        else:
            await self._finish(item, "sent")

    async def _reserve_quota(self, user_id: int) -> int | None:
        """Take one message from the user's window; None if allowed, else the error code it would get."""
        now = utcnow()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(User).where(User.id == user_id, User.cs_window_until > now, User.cs_quota_left > 0)
                .values(cs_quota_left=User.cs_quota_left - 1)
            )
            if result.rowcount:
                return None
            user = (await session.execute(
                select(User.cs_window_until).where(User.id == user_id))).one()
            return 45015 if user.cs_window_until is None or user.cs_window_until <= now else 45047

    async def _close_window(self, user_id: int, *, window: bool) -> None:
        values = {"cs_quota_left": 0, **({"cs_window_until": utcnow()} if window else {})}
        async with self.sessions.begin() as session:
            await session.execute(update(User).where(User.id == user_id).values(**values))

    async def _refund_quota(self, user_id: int) -> None:
        """The send did not happen: give back the message reserved for it."""
        async with self.sessions.begin() as session:
            await session.execute(update(User).where(User.id == user_id)
                                  .values(cs_quota_left=User.cs_quota_left + 1))

    async def _retry(self, item: Claimed, code: int | None, error: str) -> None:
        due = utcnow() + timedelta(seconds=backoff(item.attempts))
        async with self.sessions.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.id == item.id)
                .values(status="pending", next_attempt_at=due, lease_until=None, error_code=code, error=error[:500])
            )
        log.info("outbox retry scheduled", extra={"outbox_id": item.id, "attempt": item.attempts, "code": code})
        if self.on_result:
            self.on_result("retry", code)

    async def _finish(self, item: Claimed, status: str, *, code: int | None = None, error: str | None = None) -> None:
        now = utcnow()
        async with self.sessions.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.id == item.id)
                .values(status=status, lease_until=None, error_code=code, error=error,
                        sent_at=now if status == "sent" else None)
            )
        if status == "failed":
            log.warning("outbox message failed", extra={"outbox_id": item.id, "code": code})
        if self.on_result:
            self.on_result(status, code)

