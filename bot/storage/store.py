"""The units of work the message pipeline and the outbox run, each one short transaction."""

from __future__ import annotations

import secrets
from functools import lru_cache, partial
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.storage.models import (OPEN_INBOUND, Conversation, Escalation, Instance, Message, OutboxItem, User,
                                UTCDateTime, utcnow)
from bot.storage.runner import Runner
from bot.storage.statements import execute, run_insert, run_update, select_where
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
    loaded: Loaded | None = None  # the turn's starting point, read in the same transaction (if asked for)


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
    user_language: str | None = None  # what the user's row says (saved again only when the turn changes it)


@dataclass(frozen=True)
class Loaded:
    """What a turn starts from: the conversation, and whether earlier messages of the user are still open.

    ``busy``: earlier unanswered messages a live process holds (handling them, or about to); ``abandoned``:
    earlier unanswered messages nobody holds (their worker failed or died)."""

    conversation: ConversationState
    generation: int
    busy: list[int]
    abandoned: list[int]


@dataclass
class Saved:
    """An outcome as stored: outbound message ids in order, and the passive one if any."""

    reply_ids: list[int] = field(default_factory=list)
    passive_id: int | None = None


class Store:
    """The pipeline's units of work; each runs in one transaction through the runner (group commit on SQLite)."""

    def __init__(self, runner: Runner, dialect: str, instance: str = "") -> None:
        self.runner = runner
        self.instance = instance or secrets.token_hex(8)
        self.dialect = dialect

    async def heartbeat(self) -> None:
        """Tell other processes this one is alive (its leases are real)."""
        await self.runner.run(partial(_heartbeat, self.dialect, self.instance))

    async def record_inbound(self, msg: Inbound, lease: timedelta, preload: timedelta | None = None) -> Recorded:
        """Store the message (dedup on its channel key) and refresh the user's service window.

        ``preload``: for a new message, also read what ``load_turn(…, since=preload)`` would return, in the same
        transaction (``Recorded.loaded``), which spares a second round trip when nobody else touches the user
        before the turn starts (the caller judges that)."""
        return await self.runner.run(partial(_record_inbound, self.dialect, self.instance, msg, lease, preload))

    async def claim(self, message_id: int, lease: timedelta) -> bool:
        """Take over an unanswered message whose worker is gone: its lease ran out or its process died."""
        return await self.runner.run(partial(_claim, self.instance, message_id, lease))

    async def status_of(self, message_id: int) -> tuple[str, datetime | None]:
        """The inbound message's status and lease."""
        return await self.runner.run(partial(_status_of, message_id))

    async def replies_to(self, message_id: int) -> list[tuple[int, str, str | None]]:
        """Stored replies to an inbound message, in order: (id, text, delivery)."""
        return await self.runner.run(partial(_replies_to, message_id))

    async def stale_unanswered(self, older_than: timedelta, limit: int = 50) -> list[int]:
        """Inbound messages whose worker died before answering (lease expired)."""
        return await self.runner.run(partial(_stale_unanswered, older_than, limit))

    async def inbound_for_retry(self, message_id: int) -> tuple[str, str, str | None, int]:
        """(openid, kind, text, user_id) of a stored inbound message."""
        return await self.runner.run(partial(_inbound_for_retry, message_id))

    async def load_turn(self, user_id: int, message_id: int, since: timedelta) -> Loaded:
        """The user's conversation (created on first use), the knowledge base's generation, and the user's
        earlier messages (recorded less than ``since`` ago) that are still unanswered."""
        return await self.runner.run(partial(_load_turn, self.dialect, user_id, message_id, since))

    async def release(self, message_id: int) -> None:
        """Give up this process's lease on an unanswered message (its handling failed): anyone may take it."""
        await self.runner.run(partial(_release, self.instance, message_id))

    async def save_turn(self, *, message_id: int, conversation: ConversationState, replies: list[str],
                        passive: bool, inbound_update: dict[str, Any], user_update: dict[str, Any],
                        escalation: dict[str, Any] | None, openid: str) -> Saved:
        """Store a handled turn at once: replies, conversation, user, escalation, outbox rows."""
        return await self.runner.run(partial(_save_turn, self.dialect, message_id, conversation, replies, passive,
                                             inbound_update, user_update, escalation, openid))

    async def move_passive_to_outbox(self, reply_id: int, openid: str, user_id: int) -> None:
        """The passive window closed before the reply was ready: send it through the outbox."""
        await self.runner.run(partial(_move_passive_to_outbox, reply_id, openid, user_id))

    async def enqueue(self, *, user_id: int, openid: str, text: str, sender: str = "bot") -> int:
        """Store an outgoing message and queue it for the customer-service API."""
        return await self.runner.run(partial(_enqueue, self.dialect, user_id, openid, text, sender))

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.runner.run(_ping)


# The units themselves: module-level functions of plain values (bound with ``partial``), so that a
# runner may also hand them to another process.

def _heartbeat(dialect: str, me: str, conn: Connection) -> None:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    conn.execute(insert(Instance.__table__).values(id=me, started_at=now, heartbeat_at=now)
                 .on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now}))
    conn.execute(delete(Instance).where(Instance.heartbeat_at < now - timedelta(days=1)))


def _record_inbound(dialect: str, me: str, msg: Inbound, lease: timedelta, preload: timedelta | None,
                    conn: Connection) -> Recorded:
    now = utcnow()
    user_id = _touch_user(conn, dialect, msg, now)
    new_id = run_insert(conn, MESSAGES, dict(
        user_id=user_id, direction="in", sender="user", channel_key=msg.channel_key, msg_type=msg.kind,
        text=msg.text if msg.text is not None else msg.event_key, status="received",
        lease_until=now + lease, lease_owner=me, created_at=now, seq=0),
        dialect, conflict="channel_key", returning=True).scalar_one_or_none()
    if new_id is not None:
        loaded = _load_turn(dialect, user_id, new_id, preload, conn) if preload is not None else None
        return Recorded(new_id, user_id, True, "received", now + lease, loaded)
    row = execute(conn, select_where(MESSAGES, ("id", "status", "lease_until"), "channel_key"),
                  {"channel_key": msg.channel_key}).one()
    return Recorded(row.id, user_id, False, row.status, row.lease_until)


def _claim(me: str, message_id: int, lease: timedelta, conn: Connection) -> bool:
    now = utcnow()
    result = conn.execute(
        update(Message).where(Message.id == message_id, Message.status == "received", _abandoned(now))
        .values(lease_until=now + lease, lease_owner=me))
    return bool(result.rowcount)


def _status_of(message_id: int, conn: Connection) -> tuple[str, datetime | None]:
    row = conn.execute(select(Message.status, Message.lease_until).where(Message.id == message_id)).one()
    return row.status, row.lease_until


def _replies_to(message_id: int, conn: Connection) -> list[tuple[int, str, str | None]]:
    rows = conn.execute(select(Message.id, Message.text, Message.delivery)
                        .where(Message.reply_to_id == message_id).order_by(Message.seq))
    return [(r.id, r.text or "", r.delivery) for r in rows]


def _stale_unanswered(older_than: timedelta, limit: int, conn: Connection) -> list[int]:
    now = utcnow()
    rows = conn.execute(
        select(Message.id).where(Message.direction == "in", Message.status == "received", _abandoned(now),
                                 Message.created_at > now - older_than)
        .order_by(Message.id).limit(limit))
    return [r.id for r in rows]


def _inbound_for_retry(message_id: int, conn: Connection) -> tuple[str, str, str | None, int]:
    row = conn.execute(select(User.openid, Message.msg_type, Message.text, Message.user_id)
                       .join(User, User.id == Message.user_id).where(Message.id == message_id)).one()
    return row.openid, row.msg_type, row.text, row.user_id


def _load_turn(dialect: str, user_id: int, message_id: int, since: timedelta, conn: Connection) -> Loaded:
    now = utcnow()
    loaded = _read_conversation(conn, user_id)
    if loaded is None:
        run_insert(conn, CONVERSATIONS, dict(user_id=user_id, state="idle", language="zh", context={},
                                             updated_at=now), dialect, conflict="user_id")
        loaded = _read_conversation(conn, user_id)
    assert loaded is not None
    earlier = execute(conn, EARLIER_UNANSWERED, {"user_id": user_id, "message_id": message_id,
                                                "since": now - since}).all()
    busy: list[int] = []
    abandoned: list[int] = []
    if earlier:
        alive = set(execute(conn, ALIVE, {"since": now - DEAD_AFTER}).scalars())
        for row in earlier:
            live = row.lease_until is not None and row.lease_until > now and row.lease_owner in alive
            (busy if live else abandoned).append(row.id)
    return Loaded(loaded[0], loaded[1], busy, abandoned)


def _release(me: str, message_id: int, conn: Connection) -> None:
    conn.execute(update(Message).where(Message.id == message_id, Message.status == "received",
                                       Message.lease_owner == me).values(lease_until=None, lease_owner=None))


def _save_turn(dialect: str, message_id: int, conversation: ConversationState, replies: list[str], passive: bool,
               inbound_update: dict[str, Any], user_update: dict[str, Any], escalation: dict[str, Any] | None,
               openid: str, conn: Connection) -> Saved:
    now = utcnow()
    saved = Saved()
    for seq, text in enumerate(replies):
        delivery = "passive" if passive and seq == 0 else "outbox"
        reply_id = run_insert(conn, MESSAGES, dict(
            user_id=conversation.user_id, direction="out", sender="bot", msg_type="text", text=text,
            status="ready", reply_to_id=message_id, seq=seq, delivery=delivery, created_at=now),
            dialect, returning=True).scalar_one()
        saved.reply_ids.append(reply_id)
        if delivery == "passive":
            saved.passive_id = reply_id
        else:
            _queue_out(conn, conversation.user_id, reply_id, openid, text, now)
    run_update(conn, MESSAGES, message_id, dict(status="answered", answered_at=now, lease_until=None, **inbound_update))
    run_update(conn, CONVERSATIONS, conversation.id, dict(
        state=conversation.state, country=conversation.country, language=conversation.language,
        context=conversation.context, updated_at=now))
    if user_update:
        run_update(conn, USERS, conversation.user_id, user_update)
    if escalation is not None:
        _open_escalation(conn, conversation, escalation, now)
    return saved


def _move_passive_to_outbox(reply_id: int, openid: str, user_id: int, conn: Connection) -> None:
    text = conn.execute(select(Message.text).where(Message.id == reply_id)).scalar_one()
    conn.execute(update(Message).where(Message.id == reply_id).values(delivery="outbox"))
    _queue_out(conn, user_id, reply_id, openid, text or "", utcnow())


def _enqueue(dialect: str, user_id: int, openid: str, text: str, sender: str, conn: Connection) -> int:
    now = utcnow()
    message_id = run_insert(conn, MESSAGES, dict(
        user_id=user_id, direction="out", sender=sender, msg_type="text", text=text, status="ready",
        delivery="outbox", created_at=now, seq=0), dialect, returning=True).scalar_one()
    _queue_out(conn, user_id, message_id, openid, text, now)
    return int(message_id)


def _ping(conn: Connection) -> None:
    conn.execute(select(1)).scalar_one()


DEAD_AFTER = timedelta(seconds=6)
USERS: Table = User.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxItem.__table__  # type: ignore[assignment]


EARLIER_UNANSWERED = (
    select(Message.id, Message.lease_until, Message.lease_owner)
    .where(Message.user_id == bindparam("user_id"), Message.id < bindparam("message_id"), OPEN_INBOUND,
           Message.created_at > bindparam("since", type_=UTCDateTime))  # OPEN_INBOUND as written: its index
    .order_by(Message.id)
)
ALIVE = select(Instance.id).where(Instance.heartbeat_at > bindparam("since", type_=UTCDateTime))


def _abandoned(now: datetime) -> Any:
    """An inbound message nobody is working on: lease expired, or its process stopped its heartbeat."""
    alive = select(Instance.id).where(Instance.heartbeat_at > now - DEAD_AFTER)
    return or_(Message.lease_until.is_(None), Message.lease_until < now, Message.lease_owner.is_(None),
               Message.lease_owner.not_in(alive))


@lru_cache(maxsize=4)
def _upsert_user(dialect: str) -> Any:
    """A user message: create the user or refresh them, and open a fresh 48-hour window, in one statement."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    fresh = {"last_seen": bindparam("now", type_=UTCDateTime), "last_inbound_at": bindparam("now", type_=UTCDateTime),
             "cs_window_until": bindparam("until", type_=UTCDateTime), "cs_quota_left": USER_QUOTA}
    statement = insert(USERS).values(openid=bindparam("openid"), first_seen=bindparam("now", type_=UTCDateTime),
                                     subscribed=True, language="zh", **fresh)
    return statement.on_conflict_do_update(index_elements=["openid"], set_=fresh).returning(USERS.c.id)


def _touch_user(conn: Connection, dialect: str, msg: Inbound, now: datetime) -> int:
    if msg.msg_type != "event" and msg.latitude is None:
        return int(execute(conn, _upsert_user(dialect), {"openid": msg.openid, "now": now,
                                                        "until": now + USER_WINDOW}).scalar_one())
    run_insert(conn, USERS, dict(openid=msg.openid, first_seen=now, last_seen=now, subscribed=True, language="zh",
                                 cs_quota_left=0), dialect, conflict="openid")
    user = execute(conn, select_where(USERS, ("id", "cs_window_until", "cs_quota_left"), "openid"),
                        {"openid": msg.openid}).one()
    values: dict[str, Any] = {"last_seen": now}
    if msg.latitude is not None and msg.longitude is not None:
        # Stored at once (LOCATION events get no reply): the freshest position wins.
        values.update(latitude=msg.latitude, longitude=msg.longitude, location_at=now, location_label=msg.label)
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
    run_update(conn, USERS, user.id, values)
    return int(user.id)


READ_CONVERSATION = (
    select(Conversation.id, Conversation.state, Conversation.country, Conversation.language, Conversation.context,
           User.country.label("user_country"), User.latitude, User.longitude, User.location_label,
           User.language.label("user_language"),
           select(KBState.generation).where(KBState.id == 1).scalar_subquery().label("generation"))
    .join(User, User.id == Conversation.user_id).where(Conversation.user_id == bindparam("user_id"))
)


def _read_conversation(conn: Connection, user_id: int) -> tuple[ConversationState, int] | None:
    row = execute(conn, READ_CONVERSATION, {"user_id": user_id}).one_or_none()
    if row is None:
        return None
    state = ConversationState(row.id, user_id, row.state, row.country, row.language, dict(row.context or {}),
                              row.user_country, row.latitude, row.longitude, row.location_label, row.user_language)
    return state, int(row.generation or 0)


def _queue_out(conn: Connection, user_id: int, message_id: int, openid: str, text: str, now: datetime) -> None:
    run_insert(conn, OUTBOX, dict(user_id=user_id, message_id=message_id, openid=openid,
                                  payload={"msgtype": "text", "text": {"content": text}}, status="pending",
                                  attempts=0, created_at=now, next_attempt_at=now), "any")


OPEN_ESCALATION = select(Escalation.id, Escalation.priority, Escalation.case, Escalation.sla_due_at).where(
    Escalation.conversation_id == bindparam("conversation_id"), Escalation.status != "closed")


def _open_escalation(conn: Connection, conversation: ConversationState, escalation: dict[str, Any],
                     now: datetime) -> None:
    """One open escalation per conversation; a more urgent request raises its priority."""
    table: Table = Escalation.__table__  # type: ignore[assignment]
    existing = execute(conn, OPEN_ESCALATION, {"conversation_id": conversation.id}).one_or_none()
    due = now + escalation["sla"]
    if existing is None:
        run_insert(conn, table, dict(conversation_id=conversation.id, user_id=conversation.user_id,
                                     priority=escalation["priority"], reason=escalation["reason"], status="waiting",
                                     case=escalation["case"], created_at=now, sla_due_at=due), "any")
    elif escalation["priority"] < existing.priority:
        run_update(conn, table, existing.id, dict(
            priority=escalation["priority"], reason=escalation["reason"],
            case={**(existing.case or {}), **escalation["case"]},
            sla_due_at=min(existing.sla_due_at or due, due), breached_at=None))
    elif escalation["priority"] == existing.priority:
        # Same urgency, more facts (a country, a location): complete the case card.
        case = {**(existing.case or {}), **{k: v for k, v in escalation["case"].items() if v is not None}}
        run_update(conn, table, existing.id, {"case": case})


def due_filter(now: Any) -> Any:
    """Outbox rows that may be sent now (pending and due, or a sender's lease that ran out)."""
    return or_(
        and_(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now),
        and_(OutboxItem.status == "sending", OutboxItem.lease_until < now),
    )
