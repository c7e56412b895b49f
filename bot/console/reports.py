"""Figures for the reports page: volumes, waiting times, P1 cases claimed within the SLA, ratings."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Escalation, Message, utcnow


async def build(sessions: async_sessionmaker[AsyncSession], p1_sla: timedelta, days: int = 30) -> dict[str, Any]:
    since = utcnow() - timedelta(days=days)
    async with sessions() as session:
        messages = (await session.execute(select(Message.intent, Message.created_at).where(
            Message.direction == "in", Message.created_at >= since))).all()
        cases = (await session.execute(select(Escalation.priority, Escalation.created_at, Escalation.claimed_at,
                                              Escalation.rating).where(Escalation.created_at >= since))).all()
    by_intent = Counter(intent or "unknown" for intent, _ in messages).most_common(14)
    by_day = sorted(Counter(created.date().isoformat() for _, created in messages).items())[-14:]
    waits = sorted((claimed - created).total_seconds() / 60 for _, created, claimed, _ in cases if claimed)
    p1 = [(created, claimed) for priority, created, claimed, _ in cases if priority == 1]
    p1_ok = sum(1 for created, claimed in p1 if claimed and claimed - created <= p1_sla)
    ratings = [r for *_, r in cases if r]
    return {
        "by_intent": [(k, float(v)) for k, v in by_intent],
        "by_day": [(k, float(v)) for k, v in by_day],
        "median_wait": f"{statistics.median(waits):.1f}" if waits else "—",
        "p90_wait": f"{waits[min(len(waits) - 1, int(0.9 * len(waits)))]:.1f}" if waits else "—",
        "p1_within_sla": f"{p1_ok}/{len(p1)}（{p1_ok / len(p1):.0%}）" if p1 else "—",
        "rating": f"{statistics.mean(ratings):.1f}" if ratings else "—",
        "ratings": len(ratings),
        "rating_counts": [(f"{n} 分", float(ratings.count(n))) for n in range(5, 0, -1)] if ratings else [],
    }
