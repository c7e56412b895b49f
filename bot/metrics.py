"""Prometheus metrics (``GET /metrics``): one registry per application, so several apps can share a process."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Escalation, OutboxItem, utcnow

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0)


class Metrics:
    """Counters updated as things happen, gauges read from the database at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("lingbao_messages_total", "Inbound messages handled", ["type", "intent"], registry=r)
        self.webhook = Histogram("lingbao_webhook_seconds", "Time to answer a /wechat POST", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.responses = Counter("lingbao_webhook_responses_total", "/wechat POST answers", ["status"], registry=r)
        self.nlu = Counter("lingbao_nlu_total", "Messages classified, by engine that answered", ["engine"], registry=r)
        self.nlu_fallbacks = Counter("lingbao_nlu_rasa_fallbacks_total", "Rasa failed; built-in engine answered",
                                     ["reason"], registry=r)
        self.sla_breaches = Counter("lingbao_sla_breaches_total", "Cases that waited past their SLA", ["priority"],
                                    registry=r)
        self.outbox = Counter("lingbao_outbox_results_total", "Outbox send results", ["result", "code"], registry=r)
        self.queue_waiting = Gauge("lingbao_queue_waiting", "Cases waiting for an officer", ["priority"], registry=r)
        self.queue_oldest = Gauge("lingbao_queue_oldest_wait_seconds", "Longest current wait", ["priority"],
                                  registry=r)
        self.backlog = Gauge("lingbao_outbox_backlog", "Outgoing messages not yet sent", registry=r)

    def outbox_result(self, result: str, code: int | None) -> None:
        self.outbox.labels(result=result, code=str(code) if code is not None else "").inc()

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Read queue length, waiting time and outbox backlog from the database."""
        now = utcnow()
        async with sessions() as session:
            rows = (await session.execute(
                select(Escalation.priority, func.count(), func.min(Escalation.created_at))
                .where(Escalation.status == "waiting").group_by(Escalation.priority))).all()
            backlog = (await session.execute(select(func.count()).select_from(OutboxItem)
                                             .where(OutboxItem.status.in_(("pending", "sending"))))).scalar_one()
        for priority in (1, 2, 3):
            self.queue_waiting.labels(priority=str(priority)).set(0)
            self.queue_oldest.labels(priority=str(priority)).set(0)
        for priority, count, oldest in rows:
            self.queue_waiting.labels(priority=str(priority)).set(count)
            if isinstance(oldest, datetime):
                oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
                self.queue_oldest.labels(priority=str(priority)).set((now - oldest).total_seconds())
        self.backlog.set(backlog)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


async def metrics_view(request: web.Request) -> web.Response:
    from bot.api import QUEUE

    metrics = request.app[METRICS]
    await metrics.refresh(request.app[QUEUE].sessions)
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
