"""The human queue: escalations ordered by urgency, claimed, answered, transferred and closed by staff."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import Principal, audit
from bot.errors import LingbaoError
from bot.storage.models import Conversation, Escalation, Message, OutboxItem, User, utcnow
from bot.storage.locks import LockTimeout, UserLocks
from bot.storage.runner import Runner
from bot.storage.staff import AuditEntry, CaseNote, Staff
from bot.wechat.api import ERROR_TEXT

OPEN = ("waiting", "assigned")
TRANSCRIPT_LIMIT = 200  # messages shown of a conversation; earlier ones are paged back to through the API
CLAIMED_TEXT_ZH = "值班人员已接手您的求助，请直接在这里和我们沟通。"
SLA_P1_TEXT_ZH = ("值班人员正在赶来，请立即拨打12308热线：+86-10-12308 或 +86-10-65612308，接通后按0再按9直接找人工；"
                  "有危险请先拨打当地报警电话。")
CLOSED_TEXT_ZH = "本次人工服务已结束。如需继续帮助，随时发消息给我。请为这次服务打分：回复1到5（5为非常满意）。"


_WAITING = select(func.count()).select_from(Escalation).where(Escalation.status == "waiting")
MY_WAITING_CASE = select(Escalation.id, Escalation.priority, Escalation.created_at).where(
    Escalation.conversation_id == bindparam("conversation_id"), Escalation.status == "waiting")
WAITING_AT_OR_ABOVE = _WAITING.where(Escalation.priority <= bindparam("priority"))
WAITING_AHEAD = _WAITING.where(Escalation.id != bindparam("id"), or_(
    Escalation.priority < bindparam("priority"),
    and_(Escalation.priority == bindparam("priority"), Escalation.created_at <= bindparam("created_at"))))
RECENT_CLAIMS = (select(Escalation.created_at, Escalation.claimed_at).where(Escalation.claimed_at.is_not(None))
                 .order_by(Escalation.claimed_at.desc()).limit(20))


class QueueError(LingbaoError):
    """A queue operation that is not allowed (the message says why); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Position:
    """Where a conversation stands in the queue."""

    ahead: int
    wait_minutes: int | None


class Queue:
    """Escalation operations; each is one transaction and audited."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], runner: Runner | None = None,
                 locks: UserLocks | None = None) -> None:
        self.sessions = sessions
        self.runner = runner
        self.locks = locks  # the message pipeline's per-citizen locks (set by the app)

    @contextlib.asynccontextmanager
    async def _between_turns(self, escalation_id: int) -> AsyncIterator[None]:
        """Hold the citizen's lock, as the message pipeline does from loading a turn to saving it: a change of
        the conversation's state here (claimed, closed) must not land in between, or the turn's save would
        write the old state back."""
        if self.locks is None:
            yield
            return
        async with self.sessions() as session:
            user_id = (await session.execute(select(Escalation.user_id).where(
                Escalation.id == escalation_id))).scalar_one_or_none()
        if user_id is None:
            yield  # no such case: the operation itself says so
            return
        try:
            async with self.locks.hold(user_id):
                yield
        except LockTimeout:
            raise QueueError("the citizen's message is still being handled; try again", 409) from None

    async def listing(self, status: str | None) -> list[dict[str, Any]]:
        """Escalations, most urgent first, then oldest first."""
        async with self.sessions() as session:
            query = (select(Escalation, User.openid).join(User, User.id == Escalation.user_id)
                     .order_by(Escalation.priority, Escalation.created_at, Escalation.id))
            if status:
                query = query.where(Escalation.status == status)
            rows = await session.execute(query)
            return [_item(esc, openid) for esc, openid in rows]

    async def claim(self, escalation_id: int, who: Principal) -> dict[str, Any]:
        async with self._between_turns(escalation_id), self.sessions.begin() as session:
            esc = await self._get(session, escalation_id, lock=True)
            if esc.status == "closed":
                raise QueueError("this case is closed")
            if esc.status == "assigned" and esc.assignee != who.name:
                raise QueueError(f"already claimed by {esc.assignee}")
            now = utcnow()
            esc.status, esc.assignee = "assigned", who.name
            esc.claimed_at = esc.claimed_at or now
            await _set_state(session, esc.conversation_id, "with_officer")
            await _send(session, esc.user_id, CLAIMED_TEXT_ZH, sender="bot")
            await audit(session, who.name, "claim", f"escalation:{esc.id}")
            return _item(esc, await _openid(session, esc.user_id))

    async def transfer(self, escalation_id: int, who: Principal, to: str) -> dict[str, Any]:
        async with self._between_turns(escalation_id), self.sessions.begin() as session:
            esc = await self._get(session, escalation_id, lock=True)
            if esc.status == "closed":
                raise QueueError("this case is closed")
            if esc.assignee not in (None, who.name) and who.role not in ("supervisor", "admin"):
                raise QueueError("only the assignee or a supervisor can transfer this case", 403)
            target = (await session.execute(select(Staff).where(Staff.name == to, Staff.active))).scalar_one_or_none()
            if target is None or target.role not in ("officer", "supervisor"):
                raise QueueError(f"{to!r} is not an active officer or supervisor", 400)
            esc.status, esc.assignee = "assigned", target.name
            esc.claimed_at = esc.claimed_at or utcnow()
            await _set_state(session, esc.conversation_id, "with_officer")
            await audit(session, who.name, "transfer", f"escalation:{esc.id}", to=target.name)
            return _item(esc, await _openid(session, esc.user_id))

    async def close(self, escalation_id: int, who: Principal) -> dict[str, Any]:
        async with self._between_turns(escalation_id), self.sessions.begin() as session:
            esc = await self._get(session, escalation_id, lock=True)
            if esc.status == "closed":
                raise QueueError("this case is already closed")
            self._check_owner(esc, who)
            esc.status, esc.closed_at = "closed", utcnow()
            esc.assignee = esc.assignee or who.name
            await _set_state(session, esc.conversation_id, "closed")
            await _send(session, esc.user_id, CLOSED_TEXT_ZH, sender="bot")
            await audit(session, who.name, "close", f"escalation:{esc.id}")
            return _item(esc, await _openid(session, esc.user_id))

    async def reply(self, escalation_id: int, who: Principal, text: str) -> int:
        """An officer's message to the citizen, through the outbox."""
        text = text.strip()
        if not text or len(text) > 2000:
            raise QueueError("text: 1 to 2000 characters", 400)
        async with self.sessions.begin() as session:
            esc = await self._get(session, escalation_id, lock=True)
            if esc.status != "assigned":
                raise QueueError("claim the case before replying")
            self._check_owner(esc, who)
            message_id = await _send(session, esc.user_id, text, sender="officer", author=who.name)
            await audit(session, who.name, "reply", f"escalation:{esc.id}", message_id=message_id)
            return message_id

    async def note(self, escalation_id: int, who: Principal, text: str) -> None:
        if not text.strip():
            raise QueueError("text: required", 400)
        async with self.sessions.begin() as session:
            esc = await self._get(session, escalation_id, lock=True)
            session.add(CaseNote(escalation_id=esc.id, author=who.name, text=text.strip()[:4000]))
            await audit(session, who.name, "note", f"escalation:{esc.id}")

    async def transcript(self, escalation_id: int, who: Principal, *, before: int | None = None,
                         limit: int = TRANSCRIPT_LIMIT, audit_view: bool = True) -> Transcript:
        """The conversation's latest ``limit`` messages (those before message ``before``, to page back), oldest
        first, with each outgoing message's delivery state. ``audit_view``: record the view (the console's refresh
        of a case page already open does not; opening the page did)."""
        async with self.sessions.begin() as session:
            esc = await self._get(session, escalation_id)
            query = (select(Message, OutboxItem.status, OutboxItem.error_code, OutboxItem.error)
                     .outerjoin(OutboxItem, OutboxItem.message_id == Message.id)
                     .where(Message.user_id == esc.user_id).order_by(Message.id.desc()).limit(limit + 1))
            if before is not None:
                query = query.where(Message.id < before)
            rows = (await session.execute(query)).all()
            items = [_message(m, status, code, error) for m, status, code, error in reversed(rows[:limit])]
            if audit_view:
                await audit(session, who.name, "view", f"escalation:{esc.id}")
            return Transcript(items, more=len(rows) > limit)

    async def position(self, conversation_id: int, priority: int) -> Position:
        """Open cases ahead of this conversation's (or of a new case of ``priority``), and a rough wait."""
        unit = partial(_position, conversation_id, priority)
        if self.runner is not None:
            return await self.runner.run(unit)
        async with self.sessions.begin() as session:
            return await session.run_sync(lambda s: unit(s.connection()))

    async def rate(self, conversation_id: int, rating: int) -> bool:
        """Store the citizen's 1–5 rating on their last closed case."""
        async with self.sessions.begin() as session:
            esc = (await session.execute(
                select(Escalation).where(Escalation.conversation_id == conversation_id, Escalation.status == "closed")
                .order_by(Escalation.closed_at.desc()).limit(1).with_for_update())).scalar_one_or_none()
            if esc is None:
                return False
            esc.rating = rating
            return True

    async def get(self, escalation_id: int) -> dict[str, Any]:
        async with self.sessions() as session:
            esc = await self._get(session, escalation_id)
            return _item(esc, await _openid(session, esc.user_id))

    async def open_cases(self) -> list[dict[str, Any]]:
        """Waiting and assigned cases, most urgent first (the live queue and the handover view)."""
        return [item for item in await self.listing(None) if item["status"] in OPEN]

    async def notes(self, escalation_id: int) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(CaseNote).where(CaseNote.escalation_id == escalation_id)
                                          .order_by(CaseNote.id))).scalars()
            return [{"author": n.author, "text": n.text, "created_at": _iso(n.created_at)} for n in rows]

    async def window(self, escalation_id: int) -> dict[str, Any]:
        """The citizen's customer-service window: open or not, time left, messages left."""
        async with self.sessions() as session:
            esc = await self._get(session, escalation_id)
            user = await session.get(User, esc.user_id)
        assert user is not None
        now = utcnow()
        if user.cs_window_until is None or user.cs_window_until <= now:
            return {"open": False, "left": "0", "quota": 0}
        minutes = int((user.cs_window_until - now).total_seconds() // 60)
        return {"open": True, "left": f"{minutes // 60}小时{minutes % 60}分", "quota": user.cs_quota_left}

    async def check_sla(self) -> list[dict[str, Any]]:
        """Mark waiting cases past their SLA as breached (once); P1: tell the person to call 12308 now."""
        now = utcnow()
        breached: list[dict[str, Any]] = []
        async with self.sessions.begin() as session:
            # Every process runs this loop: rows another process is flagging right now are skipped.
            rows = (await session.execute(select(Escalation).where(
                Escalation.status == "waiting", Escalation.breached_at.is_(None),
                Escalation.sla_due_at < now).with_for_update(skip_locked=True))).scalars().all()
            for esc in rows:
                esc.breached_at = now
                if esc.priority == 1:
                    await _send(session, esc.user_id, SLA_P1_TEXT_ZH, sender="bot")
                await audit(session, "system", "sla_breach", f"escalation:{esc.id}", priority=esc.priority)
                breached.append(_item(esc, await _openid(session, esc.user_id)))
        return breached

    async def audit_log(self, limit: int = 300) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))).scalars()
            return [{"at": _iso(e.at) or "", "actor": e.actor, "action": e.action, "target": e.target,
                     "detail": e.detail} for e in rows]

    @staticmethod
    def _check_owner(esc: Escalation, who: Principal) -> None:
        if esc.assignee not in (None, who.name) and who.role not in ("supervisor", "admin"):
            raise QueueError(f"this case belongs to {esc.assignee}", 403)

    @staticmethod
    async def _get(session: AsyncSession, escalation_id: int, *, lock: bool = False) -> Escalation:
        """The escalation; ``lock``: row-locked until the transaction ends (PostgreSQL), so officers on two
        processes acting on one case at once take turns and the second sees what the first did."""
        if lock:
            # Lock the conversation first, as the message pipeline does when it saves a turn (conversation,
            # then escalation): taking them in the other order could deadlock with a citizen's message.
            conversation_id = (await session.execute(select(Escalation.conversation_id).where(
                Escalation.id == escalation_id))).scalar_one_or_none()
            if conversation_id is not None:
                await session.execute(select(Conversation.id).where(Conversation.id == conversation_id)
                                      .with_for_update())
        esc = await session.get(Escalation, escalation_id, with_for_update=lock)
        if esc is None:
            raise QueueError("no such escalation", 404)
        return esc


async def _set_state(session: AsyncSession, conversation_id: int, state: str) -> None:
    await session.execute(update(Conversation).where(Conversation.id == conversation_id)
                          .values(state=state, updated_at=utcnow()))


async def _openid(session: AsyncSession, user_id: int) -> str:
    return str((await session.execute(select(User.openid).where(User.id == user_id))).scalar_one())


async def _send(session: AsyncSession, user_id: int, text: str, *, sender: str, author: str | None = None) -> int:
    now = utcnow()
    message = Message(user_id=user_id, direction="out", sender=sender, msg_type="text", text=text, status="ready",
                      delivery="outbox", author=author, created_at=now)
    session.add(message)
    await session.flush()
    session.add(OutboxItem(user_id=user_id, message_id=message.id, openid=await _openid(session, user_id),
                           payload={"msgtype": "text", "text": {"content": text}}, created_at=now,
                           next_attempt_at=now))
    return message.id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _item(esc: Escalation, openid: str) -> dict[str, Any]:
    return {"id": esc.id, "openid": openid, "priority": esc.priority, "reason": esc.reason, "status": esc.status,
            "assignee": esc.assignee, "created_at": _iso(esc.created_at), "claimed_at": _iso(esc.claimed_at),
            "closed_at": _iso(esc.closed_at), "sla_due_at": _iso(esc.sla_due_at), "case": esc.case or {},
            "breached_at": _iso(esc.breached_at),
            "rating": esc.rating}


@dataclass(frozen=True)
class Transcript:
    """A page of a conversation, oldest first, and whether earlier messages exist."""

    items: list[dict[str, Any]]
    more: bool


def _message(m: Message, status: str | None, code: int | None, error: str | None) -> dict[str, Any]:
    sender = "user" if m.direction == "in" else ("officer" if m.sender == "officer" else "bot")
    if m.direction == "in":
        delivery = None
    elif m.delivery == "passive":
        delivery = "sent"
    else:
        delivery = {"sent": "sent", "failed": "failed"}.get(status or "", "pending")
    return {"id": m.id, "sender": sender, "author": m.author, "text": m.text, "type": m.msg_type,
            "created_at": _iso(m.created_at), "delivery": delivery,
            "error": (ERROR_TEXT.get(code, error) if delivery == "failed" and code else error) if delivery == "failed"
            else None, "error_code": code if delivery == "failed" else None}


def _position(conversation_id: int, priority: int, conn: Connection) -> Position:
    """The unit behind ``Queue.position`` (module-level, so a runner may hand it to another process)."""
    mine = conn.execute(MY_WAITING_CASE, {"conversation_id": conversation_id}).one_or_none()
    if mine is None:  # not stored yet: everything as or more urgent is ahead
        ahead = conn.execute(WAITING_AT_OR_ABOVE, {"priority": priority}).scalar_one()
    else:
        ahead = conn.execute(WAITING_AHEAD, {"id": mine.id, "priority": mine.priority,
                                             "created_at": mine.created_at}).scalar_one()
    waits = [(claimed - created).total_seconds() / 60 for created, claimed in conn.execute(RECENT_CLAIMS)]
    wait = max(1, round(statistics.median(waits) * (int(ahead) + 1))) if waits else None
    return Position(int(ahead), wait)
