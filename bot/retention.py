"""Retention: message text older than ``BOT_RETENTION_DAYS`` is purged; case metadata and the audit log stay."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import audit
from bot.storage.models import Escalation, Message, OutboxItem, utcnow
from bot.storage.staff import CaseNote

log = logging.getLogger(__name__)
PURGED = "[已按保留期限删除]"


@dataclass(frozen=True)
class Purged:
    messages: int
    cases: int
    notes: int


async def purge(sessions: async_sessionmaker[AsyncSession], days: int) -> Purged:
    """Blank the text of messages, outbox payloads, case quotes and notes older than ``days``."""
    cutoff = utcnow() - timedelta(days=days)
    async with sessions.begin() as session:
        messages = await session.execute(
            update(Message).where(Message.created_at < cutoff, Message.text.is_not(None), Message.text != PURGED)
            .values(text=PURGED))
        await session.execute(
            update(OutboxItem).where(OutboxItem.created_at < cutoff, OutboxItem.status.in_(("sent", "failed")))
            .values(payload={"msgtype": "text", "text": {"content": PURGED}}))
        notes = await session.execute(
            update(CaseNote).where(CaseNote.created_at < cutoff, CaseNote.text != PURGED).values(text=PURGED))
        cases = 0
        old = (await session.execute(select(Escalation).where(Escalation.created_at < cutoff,
                                                              Escalation.status == "closed"))).scalars()
        for esc in old:
            case = dict(esc.case or {})
            if case.get("said") not in (None, PURGED):
                case["said"] = PURGED
                esc.case = case
                cases += 1
        result = Purged(int(messages.rowcount), cases, int(notes.rowcount))
        await audit(session, "system", "purge", None, days=days, messages=result.messages, cases=result.cases,
                    notes=result.notes)
    log.info("retention purge done", extra={"days": days, "messages": result.messages, "cases": result.cases})
    return result
