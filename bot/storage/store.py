"""The units of work the message pipeline and the outbox run, each one short transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.storage.models import Conversation, Escalation, Message, OutboxItem, User, utcnow
from bot.wechat.messages import Inbound
from knowledge.models import KBState

USER_WINDOW = timedelta(hours=48)
USER_QUOTA = 5
EVENT_WINDOW = timedelta(minutes=1)
EVENT_QUOTA = 3
# Events that open a short customer-service window (WeChat's quota table).
WINDOW_EVENTS = frozenset({"event:subscribe", "event:click", "event:scan", "event:scancode_push",
                           "event:scancode_waitmsg"})
SILENT_EVENTS = frozenset({"event:location", "event:unsubscribe", "event:view", "event:templatesendjobfinish"})


@dataclass(frozen=True)
class Recorded:
    """Result of recording an inbound message: its row and whether it was new."""

    message_id: int
    user_id: int
    is_new: bool
    status: str
    lease_until: datetime | None


@dataclass
class ConversationState:
    """A conversation as loaded for one turn (state, context, country, language)."""

    id: int
    user_id: int
    state: str
    country: str | None
    language: str
    context: dict[str, Any]
    user_country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_label: str | None = None


@dataclass
class Saved:
    """An outcome as stored: outbound message ids in order, and the passive one if any."""

    reply_ids: list[int] = field(default_factory=list)
    passive_id: int | None = None


class Store:
    """Queries over the engine; every public method is one short transaction."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                 readers: async_sessionmaker[AsyncSession] | None = None) -> None:
        self.engine = engine
        self.sessions = sessions
        self.readers = readers or sessions
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def record_inbound(self, msg: Inbound, lease: timedelta) -> Recorded:
        """Store the message (dedup on its channel key) and refresh the user's service window."""
        now = utcnow()
        async with self.sessions.begin() as session:
            user_id = await self._touch_user(session, msg, now)
            inserted = await session.execute(
                self._insert(Message)
                .values(user_id=user_id, direction="in", sender="user", channel_key=msg.channel_key,
                        msg_type=msg.kind, text=msg.text if msg.text is not None else msg.event_key,
                        status="received", lease_until=now + lease,
                        created_at=now, seq=0)
                .on_conflict_do_nothing(index_elements=["channel_key"])
                .returning(Message.id)
            )
            new_id = inserted.scalar_one_or_none()
            if new_id is not None:
                return Recorded(new_id, user_id, True, "received", now + lease)
            row = (await session.execute(
                select(Message.id, Message.status, Message.lease_until).where(Message.channel_key == msg.channel_key)
            )).one()
            return Recorded(row.id, user_id, False, row.status, row.lease_until)

    async def _touch_user(self, session: AsyncSession, msg: Inbound, now: datetime) -> int:
        await session.execute(
            self._insert(User).values(openid=msg.openid, first_seen=now, last_seen=now, subscribed=True,
                                      language="zh", cs_quota_left=0)
            .on_conflict_do_nothing(index_elements=["openid"])
        )
        user = (await session.execute(
            select(User.id, User.cs_window_until, User.cs_quota_left).where(User.openid == msg.openid)
        )).one()
        values: dict[str, Any] = {"last_seen": now}
        if msg.latitude is not None and msg.longitude is not None:
            # Stored at once (LOCATION events get no reply): the freshest position wins.
            values.update(latitude=msg.latitude, longitude=msg.longitude, location_at=now,
                          location_label=msg.label)
        if msg.kind == "event:unsubscribe":
            values.update(subscribed=False, cs_window_until=None, cs_quota_left=0)
        elif msg.kind == "event:subscribe":
            values["subscribed"] = True
        if msg.msg_type != "event":
            values.update(last_inbound_at=now, cs_window_until=now + USER_WINDOW, cs_quota_left=USER_QUOTA)
        elif msg.kind in WINDOW_EVENTS:
            active = user.cs_window_until is not None and user.cs_window_until > now
            if not active or user.cs_quota_left < EVENT_QUOTA:
                until = max(user.cs_window_until, now + EVENT_WINDOW) if active else now + EVENT_WINDOW
                values.update(cs_window_until=until, cs_quota_left=EVENT_QUOTA)
        await session.execute(update(User).where(User.id == user.id).values(**values))
        return int(user.id)

    async def claim(self, message_id: int, lease: timedelta) -> bool:
        """Take over an unanswered message whose previous lease has run out (a crashed worker)."""
        now = utcnow()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "received",
                       or_(Message.lease_until.is_(None), Message.lease_until < now))
                .values(lease_until=now + lease)
            )
            return bool(result.rowcount)

    async def status_of(self, message_id: int) -> tuple[str, datetime | None]:
        """The inbound message's status and lease."""
        async with self.readers() as session:
            row = (await session.execute(
                select(Message.status, Message.lease_until).where(Message.id == message_id))).one()
            return row.status, row.lease_until

    async def replies_to(self, message_id: int) -> list[tuple[int, str, str | None]]:
        """Stored replies to an inbound message, in order: (id, text, delivery)."""
        async with self.readers() as session:
            rows = await session.execute(
                select(Message.id, Message.text, Message.delivery)
                .where(Message.reply_to_id == message_id).order_by(Message.seq)
            )
            return [(r.id, r.text or "", r.delivery) for r in rows]

    async def stale_unanswered(self, older_than: timedelta, limit: int = 50) -> list[int]:
        """Inbound messages whose worker died before answering (lease expired)."""
        now = utcnow()
        async with self.readers() as session:
            rows = await session.execute(
                select(Message.id).where(Message.direction == "in", Message.status == "received",
                                         Message.lease_until < now, Message.created_at > now - older_than)
                .order_by(Message.id).limit(limit)
            )
            return [r.id for r in rows]

    async def inbound_for_retry(self, message_id: int) -> tuple[str, str, str | None, int]:
        """(openid, kind, text, user_id) of a stored inbound message."""
        async with self.readers() as session:
            row = (await session.execute(
                select(User.openid, Message.msg_type, Message.text, Message.user_id)
                .join(User, User.id == Message.user_id).where(Message.id == message_id)
            )).one()
            return row.openid, row.msg_type, row.text, row.user_id

    async def load_conversation(self, user_id: int) -> tuple[ConversationState, int]:
        """The user's conversation (created on first use) and the knowledge base's generation."""
        loaded = await self._read_conversation(user_id)
        if loaded is None:
            async with self.sessions.begin() as session:
                await session.execute(
                    self._insert(Conversation).values(user_id=user_id, state="idle", language="zh", context={},
                                                      updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["user_id"])
                )
            loaded = await self._read_conversation(user_id, writer=True)
        assert loaded is not None
        return loaded

    async def _read_conversation(self, user_id: int, writer: bool = False) -> tuple[ConversationState, int] | None:
        async with (self.sessions if writer else self.readers)() as session:
            row = (await session.execute(
                select(Conversation, User.country, User.latitude, User.longitude, User.location_label)
                .join(User, User.id == Conversation.user_id).where(Conversation.user_id == user_id)
            )).one_or_none()
            if row is None:
                return None
            generation = (await session.execute(select(KBState.generation).where(KBState.id == 1))).scalar()
            conv: Conversation = row[0]
            state = ConversationState(conv.id, user_id, conv.state, conv.country, conv.language,
                                      dict(conv.context or {}), row.country, row.latitude, row.longitude,
                                      row.location_label)
            return state, int(generation or 0)

    async def save_turn(self, *, message_id: int, conversation: ConversationState, replies: list[str],
                        passive: bool, inbound_update: dict[str, Any], user_update: dict[str, Any],
                        escalation: dict[str, Any] | None, openid: str) -> Saved:
        """Store a handled turn at once: replies, conversation, user, escalation, outbox rows."""
        now = utcnow()
        saved = Saved()
        async with self.sessions.begin() as session:
            for seq, text in enumerate(replies):
                delivery = "passive" if passive and seq == 0 else "outbox"
                reply_id = (await session.execute(
                    self._insert(Message).values(
                        user_id=conversation.user_id, direction="out", sender="bot", msg_type="text", text=text,
                        status="ready", reply_to_id=message_id, seq=seq, delivery=delivery, created_at=now)
                    .returning(Message.id)
                )).scalar_one()
                saved.reply_ids.append(reply_id)
                if delivery == "passive":
                    saved.passive_id = reply_id
                else:
                    session.add(OutboxItem(user_id=conversation.user_id, message_id=reply_id, openid=openid,
                                           payload={"msgtype": "text", "text": {"content": text}},
                                           created_at=now, next_attempt_at=now))
            await session.execute(
                update(Message).where(Message.id == message_id)
                .values(status="answered", answered_at=now, lease_until=None, **inbound_update)
            )
            await session.execute(
                update(Conversation).where(Conversation.id == conversation.id)
                .values(state=conversation.state, country=conversation.country, language=conversation.language,
                        context=conversation.context, updated_at=now)
            )
            if user_update:
                await session.execute(update(User).where(User.id == conversation.user_id).values(**user_update))
            if escalation is not None:
                await self._open_escalation(session, conversation, escalation, now)
        return saved

    async def _open_escalation(self, session: AsyncSession, conversation: ConversationState,
                               escalation: dict[str, Any], now: datetime) -> None:
        """One open escalation per conversation; a more urgent request raises its priority."""
        existing = (await session.execute(
            select(Escalation).where(Escalation.conversation_id == conversation.id,
                                     Escalation.status != "closed")
        )).scalar_one_or_none()
        if existing is None:
            session.add(Escalation(conversation_id=conversation.id, user_id=conversation.user_id,
                                   priority=escalation["priority"], reason=escalation["reason"],
                                   case=escalation["case"], created_at=now,
                                   sla_due_at=now + escalation["sla"]))
        elif escalation["priority"] < existing.priority:
            existing.priority = escalation["priority"]
            existing.reason = escalation["reason"]
            existing.case = {**existing.case, **escalation["case"]}
            existing.sla_due_at = min(existing.sla_due_at or now + escalation["sla"], now + escalation["sla"])
        elif escalation["priority"] == existing.priority:
            # Same urgency, more facts (a country, a location): complete the case card.
            existing.case = {**existing.case, **{k: v for k, v in escalation["case"].items() if v is not None}}

    async def move_passive_to_outbox(self, reply_id: int, openid: str, user_id: int) -> None:
        """The passive window closed before the reply was ready: send it through the outbox."""
        now = utcnow()
        async with self.sessions.begin() as session:
            text = (await session.execute(select(Message.text).where(Message.id == reply_id))).scalar_one()
            await session.execute(update(Message).where(Message.id == reply_id).values(delivery="outbox"))
            session.add(OutboxItem(user_id=user_id, message_id=reply_id, openid=openid,
                                   payload={"msgtype": "text", "text": {"content": text or ""}},
                                   created_at=now, next_attempt_at=now))

    async def enqueue(self, *, user_id: int, openid: str, text: str, sender: str = "bot") -> int:
        """Store an outgoing message and queue it for the customer-service API."""
        now = utcnow()
        async with self.sessions.begin() as session:
            message = Message(user_id=user_id, direction="out", sender=sender, msg_type="text", text=text,
                              status="ready", delivery="outbox", created_at=now)
            session.add(message)
            await session.flush()
            session.add(OutboxItem(user_id=user_id, message_id=message.id, openid=openid,
                                   payload={"msgtype": "text", "text": {"content": text}},
                                   created_at=now, next_attempt_at=now))
            return message.id

    async def pending_count(self) -> int:
        """Outbox rows not yet sent or failed."""
        async with self.readers() as session:
            return int((await session.execute(
                select(func.count()).select_from(OutboxItem)
                .where(OutboxItem.status.in_(("pending", "sending"))))).scalar_one())

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.readers() as session:
            await session.execute(select(1))


def due_filter(now: datetime) -> Any:
    """Outbox rows that may be sent now (pending and due, or a sender's lease that ran out)."""
    return or_(
        and_(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now),
        and_(OutboxItem.status == "sending", OutboxItem.lease_until < now),
    )
