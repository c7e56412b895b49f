"""The durable outbox: everything sent to a user outside a passive reply goes through here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timedelta

from typing import Any

from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.orm import aliased

from bot.storage.models import OutboxItem, User, UTCDateTime, in_backlog, utcnow
from bot.storage.runner import Runner
from bot.storage.statements import execute, run_update
from bot.storage.store import OUTBOX, USERS, due_filter
from bot.wechat.api import ERROR_TEXT, NetworkError, OutsideWindow, QuotaExceeded, WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 8
MAX_BACKOFF = 300.0
ROUND_GAP = 0.05  # seconds from the start of one round to the next at least


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 1, 2, 4 … capped at five minutes."""
    return min(MAX_BACKOFF, 2.0 ** max(attempt - 1, 0))


@dataclass(frozen=True)
class Claimed:
    """A row taken for sending, with its quota already reserved (or the code it would fail with)."""

    id: int
    user_id: int
    openid: str
    payload: dict[str, object]
    attempts: int
    refused: int | None = None


CLAIM_BATCH = 100  # rows taken per round at most (one per user)
MAX_IN_FLIGHT = 100  # sends at a time
# An earlier row of the same user still to send: while there is one, a row is not that user's turn (one seek in the
# backlog index).
_EARLIER = aliased(OutboxItem, name="earlier")
_WAITS_BEHIND = exists().where(_EARLIER.user_id == OutboxItem.user_id, _EARLIER.id < OutboxItem.id,
                               in_backlog(_EARLIER.status))
# Due rows that are their user's oldest unsent one, each kind read through the time index (status, next_attempt_at):
# rows due for a first try or a retry, and rows whose sender's lease ran out. A retry pushes its user's later rows
# back to its own time (_retry), so rows waiting behind a retry are not due either and a long backlog is not read.
# (No ORDER BY here: SQLite would rather walk the whole table in id order than sort the few due rows.)
_NOW = bindparam("now", type_=UTCDateTime)
DUE_HEADS = (
    select(OutboxItem.id).where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= _NOW, ~_WAITS_BEHIND),
    select(OutboxItem.id).where(OutboxItem.status == "sending", OutboxItem.lease_until < _NOW, ~_WAITS_BEHIND),
)
TAKE = (update(OutboxItem).where(OutboxItem.id == bindparam("_id"), due_filter(bindparam("now", type_=UTCDateTime)))
        .values(status="sending", lease_until=bindparam("lease"), attempts=OutboxItem.attempts + 1))
TAKEN = select(OutboxItem.id, OutboxItem.user_id, OutboxItem.openid, OutboxItem.payload, OutboxItem.attempts).where(
    OutboxItem.id == bindparam("_id"))
RESERVE = (update(User).where(User.id == bindparam("_id"), User.cs_window_until > bindparam("now", type_=UTCDateTime),
                              User.cs_quota_left > 0)
           .values(cs_quota_left=User.cs_quota_left - 1))
WINDOW = select(User.cs_window_until).where(User.id == bindparam("_id"))


def _claim_due(limit: int, conn: Connection) -> list[Claimed]:
    """Take the oldest row of each user whose turn it is (a user's rows go in order: a row waiting for a retry
    holds back the user's later ones, nobody else's), oldest first, and reserve each one's quota."""
    now = utcnow()
    claimed = []
    due = sorted(row_id for query in DUE_HEADS for (row_id,) in execute(conn, query, {"now": now}).all())
    for row_id in due[:limit]:
        if not execute(conn, TAKE, {"_id": row_id, "now": now, "lease": now + SEND_LEASE}).rowcount:
            continue  # another process took it
        row = execute(conn, TAKEN, {"_id": row_id}).one()
        claimed.append(Claimed(row.id, row.user_id, row.openid, dict(row.payload), row.attempts,
                               _reserve_quota(conn, row.user_id, now)))
    return claimed


def _reserve_quota(conn: Connection, user_id: int, now: datetime) -> int | None:
    """Take one message from the user's window; None if allowed, else the error code it would get."""
    if execute(conn, RESERVE, {"_id": user_id, "now": now}).rowcount:
        return None
    until = execute(conn, WINDOW, {"_id": user_id}).scalar_one()
    return 45015 if until is None or until <= now else 45047


class Outbox:
    """Sends due rows in order per user, with backoff on transient failures; survives restarts."""

    def __init__(self, runner: Runner, api: WeChatAPI, *, poll: float = 0.5,
                 on_result: Callable[[str, int | None], None] | None = None) -> None:
        self.runner = runner
        self.api = api
        self.poll = poll
        self.on_result = on_result
        self._wake = asyncio.Event()
        self._stopping = False
        self._sending: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; ``run`` returns once the sends in flight are done (no query is cut off mid-way)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until stopped; errors in one round are logged and the loop goes on.

        Sends run side by side, at most MAX_IN_FLIGHT, and the next round does not wait for a round's slowest
        answer from WeChat: a slow one holds back only its own person's later messages (theirs stay in order,
        since a person's next row is claimed only once the one before it is finished)."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                started = loop.time()
                room = MAX_IN_FLIGHT - len(self._sending)
                claimed = 0
                if room > 0:
                    try:
                        claimed = self._start(await self.runner.run(partial(_claim_due, min(room, CLAIM_BATCH))))
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # loop top: a database hiccup must not stop delivery for good
                        log.exception("outbox round failed")
                # Every turn with replies for the outbox wakes it, and so does every finished send: rounds are
                # spaced, so under a stream of messages each round takes many rows instead of one.
                rest = ROUND_GAP - (loop.time() - started)
                if rest > 0 and not self._stopping:
                    await asyncio.sleep(rest)
                if claimed == 0 and not self._stopping:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll)
                    except asyncio.TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            if self._sending:
                await asyncio.wait(set(self._sending))

    def _start(self, claimed: list[Claimed]) -> int:
        for item in claimed:
            task = asyncio.create_task(self._deliver(item), name=f"outbox-{item.id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()  # room for another send, and the person's next row may be due now
        if not task.cancelled() and task.exception() is not None:
            # The row stays leased to this process; once the lease runs out it is sent again.
            log.error("outbox send failed", exc_info=task.exception())

    async def _deliver(self, item: Claimed) -> None:
        if item.refused is not None:
            await self._finish(item, "failed", code=item.refused, error=ERROR_TEXT[item.refused] + " (not sent)")
            return
        try:
            await self.api.send(item.openid, item.payload)  # type: ignore[arg-type]
        except (OutsideWindow, QuotaExceeded) as exc:
            # WeChat knows best: close the window (45015) or empty the quota (45047) here too, so the
            # next message fails at once with the same reason instead of being sent.
            closing = {"cs_quota_left": 0, **({"cs_window_until": utcnow()} if isinstance(exc, OutsideWindow) else {})}
            await self._finish(item, "failed", code=exc.code, error=ERROR_TEXT[exc.code], user=closing)
        except (NetworkError, WeChatAPIError) as exc:
            code = getattr(exc, "code", None)  # the send did not happen: the quota is given back
            if getattr(exc, "transient", False) and item.attempts < MAX_ATTEMPTS:
                await self._retry(item, code, str(exc))
            else:
                await self._finish(item, "failed", code=code, error=ERROR_TEXT.get(code or 0, str(exc))[:500],
                                   refund=True)
        else:
            await self._finish(item, "sent")

    async def _retry(self, item: Claimed, code: int | None, error: str) -> None:
        due = utcnow() + timedelta(seconds=backoff(item.attempts))
        await self.runner.run(partial(_retry, item.id, item.user_id, due, code, error[:500]))
        log.info("outbox retry scheduled", extra={"outbox_id": item.id, "attempt": item.attempts, "code": code})
        if self.on_result:
            self.on_result("retry", code)

    async def _finish(self, item: Claimed, status: str, *, code: int | None = None, error: str | None = None,
                      user: dict[str, Any] | None = None, refund: bool = False) -> None:
        await self.runner.run(partial(_finish, item.id, item.user_id, status, code, error, user or {}, refund))
        if status == "failed":
            log.warning("outbox message failed", extra={"outbox_id": item.id, "code": code})
        if self.on_result:
            self.on_result(status, code)


# The units (module-level functions of plain values, so a runner may hand them to another process).

RETRY = update(OutboxItem).where(OutboxItem.id == bindparam("_id")).values(
    status="pending", next_attempt_at=bindparam("due"), lease_until=None, error_code=bindparam("code"),
    error=bindparam("error"))
# The user's later rows go after this one: not due before it (keeps them out of every round meanwhile).
PUSH_BACK = (update(OutboxItem)
             .where(OutboxItem.user_id == bindparam("_user"), OutboxItem.id > bindparam("_id"),
                    in_backlog(OutboxItem.status),  # implied by "pending"; said for the backlog index
                    OutboxItem.status == "pending", OutboxItem.next_attempt_at < bindparam("due", type_=UTCDateTime))
             .values(next_attempt_at=bindparam("due", type_=UTCDateTime)))
REFUND = update(User).where(User.id == bindparam("_id")).values(cs_quota_left=User.cs_quota_left + 1)


def _retry(outbox_id: int, user_id: int, due: datetime, code: int | None, error: str, conn: Connection) -> None:
    """A transient failure: try again at ``due``; the message's quota is given back meanwhile."""
    execute(conn, RETRY, {"_id": outbox_id, "due": due, "code": code, "error": error})
    execute(conn, PUSH_BACK, {"_id": outbox_id, "_user": user_id, "due": due})
    execute(conn, REFUND, {"_id": user_id})


def _finish(outbox_id: int, user_id: int, status: str, code: int | None, error: str | None, user: dict[str, Any],
            refund: bool, conn: Connection) -> None:
    run_update(conn, OUTBOX, outbox_id, dict(status=status, lease_until=None, error_code=code, error=error,
                                             sent_at=utcnow() if status == "sent" else None))
    if refund:
        execute(conn, REFUND, {"_id": user_id})
    if user:
        run_update(conn, USERS, user_id, user)
