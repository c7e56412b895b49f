"""``create_app(settings)``: the aiohttp application and everything it owns."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import Accounts
from bot.api import ACCOUNTS, OUTBOX_WAKE, QUEUE, SETTINGS, setup_api
from bot.api_learning import LEARNING, Learning, setup_learning_api
from bot.api_kb import EDITOR, KB, setup_kb_api
from bot.console.app import create_console
from knowledge.editor import Editor
from bot.metrics import METRICS, Metrics, metrics_view
from bot.outbox import MAX_IN_FLIGHT, Outbox
from bot.queue import Queue
from bot.retention import purge
from bot.pipeline import Pipeline
from bot.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker, migrate
from bot.storage.locks import UserLocks
from bot.storage.runner import make_runner
from bot.storage.store import Store
from bot.webhook import Webhook
from bot.wechat.api import WeChatAPI
from handlers.router import Brain

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
OUTBOX = web.AppKey("outbox", Outbox)
API = web.AppKey("api", WeChatAPI)
BRAIN = web.AppKey("brain", Brain)
WEBHOOK = web.AppKey("webhook", Webhook)
_BRAIN_FACTORY = web.AppKey("brain_factory", object)
DEMO_LOGIN = web.AppKey("demo_login", list)

MAX_BODY = 1024 * 1024
RECOVERY_INTERVAL = 4.0
HEARTBEAT_INTERVAL = 2.0
SLA_INTERVAL = 5.0


BrainFactory = Callable[[Settings, async_sessionmaker[AsyncSession]], Awaitable[Brain]]


def create_app(settings: Settings, *, brain_factory: BrainFactory | None = None) -> web.Application:
    """The whole bot as one aiohttp application (webhook, health, demo when enabled).

    ``brain_factory`` replaces how the NLU and handlers are loaded (tests use it for a slow brain).
    """
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[_BRAIN_FACTORY] = brain_factory or Brain.load
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_runtime)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/wechat", _webhook_verify)
    app.router.add_post("/wechat", _webhook_receive)
    setup_api(app)
    setup_learning_api(app)
    setup_kb_api(app)
    app.add_subapp("/console", create_console())
    if settings.demo:
        from bot.demo.routes import setup_demo

        setup_demo(app, settings)
    return app


async def _runtime(app: web.Application) -> AsyncIterator[None]:
    """Database (migrated), HTTP client, brain, pipeline, outbox worker and crash recovery."""
    settings = app[SETTINGS]
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    runner = await make_runner(settings.database_url, engine, writer_process=settings.sqlite_writer_process)
    store = Store(runner, engine.dialect.name)
    await store.heartbeat()
    # Room beyond the outbox's sends in flight, so a token refresh or a typing indicator never queues behind them.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT + 20))
    api = WeChatAPI(http, sessions, base=settings.api_base, app_id=settings.app_id,
                    app_secret=settings.app_secret, timeout=settings.api_timeout)
    brain = await app[_BRAIN_FACTORY](settings, sessions)
    metrics = app[METRICS]
    outbox = Outbox(runner, api, poll=settings.outbox_poll_interval, on_result=metrics.outbox_result)
    locks = UserLocks(settings.database_url)  # across processes on PostgreSQL
    pipeline = Pipeline(store, brain.make_turn, brain.respond, budget=settings.reply_budget, outbox=outbox,
                        locks=locks, on_handled=lambda kind, intent, engine: _count(metrics, kind, intent, engine),
                        classify=brain.classify_early)
    brain.services.nlu.on_rasa_fallback = lambda reason: metrics.nlu_fallbacks.labels(reason=reason).inc()
    brain.services.queue.runner = runner  # queue positions on the hot path go through the writer too
    brain.services.queue.locks = locks  # officers' state changes wait for a citizen's turn in progress
    app[STORE], app[API], app[OUTBOX], app[PIPELINE], app[BRAIN] = store, api, outbox, pipeline, brain
    app[WEBHOOK] = Webhook(settings, pipeline, metrics)
    app[ACCOUNTS], app[QUEUE], app[OUTBOX_WAKE] = brain.services.accounts, brain.services.queue, outbox.wake
    app[LEARNING] = learning = await Learning.start(settings, sessions, brain.services)
    app[EDITOR], app[KB] = Editor(sessions), brain.services.kb
    if settings.demo:
        password = secrets.token_urlsafe(9)
        await app[ACCOUNTS].reset("duty", "supervisor", password)
        editor_password = secrets.token_urlsafe(9)
        await app[ACCOUNTS].reset("ops", "ops", editor_password)
        console = f"http://{settings.host}:{settings.port}/console/"
        app[DEMO_LOGIN] = [f"  Duty officers' console: {console}  (user: duty  password: {password})",
                           f"  Knowledge editor (ops): {console}  (user: ops  password: {editor_password})"]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(outbox.run(), name="outbox"),
             asyncio.create_task(_recovery(pipeline, stopping), name="recovery"),
             asyncio.create_task(_sla(app[QUEUE], outbox, metrics, stopping), name="sla"),
             asyncio.create_task(_daily_purge(sessions, settings.retention_days, stopping), name="purge"),
             asyncio.create_task(learning.live.run(stopping, HEARTBEAT_INTERVAL), name="nlu-model")]
    try:
        yield
    finally:
        await pipeline.close()
        await learning.close()
        # Stop the loops between rounds rather than cancelling them mid-query.
        outbox.stop()
        stopping.set()
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await brain.close()
        await http.close()
        await locks.close()
        await runner.close()
        await engine.dispose()


async def _recovery(pipeline: Pipeline, stopping: asyncio.Event) -> None:
    """Keep this process's heartbeat fresh, and answer messages a crashed process recorded but never answered."""
    rounds = 0
    while not stopping.is_set():
        try:
            await pipeline.store.heartbeat()
            if rounds % int(RECOVERY_INTERVAL / HEARTBEAT_INTERVAL) == 0:
                await pipeline.recover(older_than=timedelta(hours=6))
        except asyncio.CancelledError:
            raise
        except Exception:  # loop top: keep trying; the next round may find the database back
            log.exception("heartbeat or recovery round failed")
        rounds += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), HEARTBEAT_INTERVAL)


def _count(metrics: Metrics, kind: str, intent: str | None, engine: str | None) -> None:
    metrics.messages.labels(type=kind, intent=intent or "").inc()
    if engine:
        metrics.nlu.labels(engine=engine).inc()


async def _sla(queue: Queue, outbox: Outbox, metrics: Metrics, stopping: asyncio.Event) -> None:
    """Flag cases that waited past their SLA (the console alerts on them; P1 citizens are told to call 12308)."""
    while not stopping.is_set():
        try:
            breached = await queue.check_sla()
            for case in breached:
                metrics.sla_breaches.labels(priority=str(case["priority"])).inc()
            if breached:
                outbox.wake()
        except asyncio.CancelledError:
            raise
        except Exception:  # loop top: a failed round is retried on the next tick
            log.exception("SLA round failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), SLA_INTERVAL)


async def _daily_purge(sessions: async_sessionmaker[AsyncSession], days: int, stopping: asyncio.Event) -> None:
    """Apply the retention period once a day (first run a minute after start)."""
    delay = 60.0
    while not stopping.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        if stopping.is_set():
            return
        try:
            await purge(sessions, days)
        except asyncio.CancelledError:
            raise
        except Exception:  # loop top: try again tomorrow rather than stop purging for good
            log.exception("retention purge failed")
        delay = 24 * 3600.0


async def _webhook_verify(request: web.Request) -> web.Response:
    return await request.app[WEBHOOK].verify(request)


async def _webhook_receive(request: web.Request) -> web.Response:
    return await request.app[WEBHOOK].receive(request)


HEALTH_TIMEOUT = 3.0  # seconds: a database (or writer process) slower than this is reported, not waited for


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: the database answers, the NLU engine is loaded."""
    app = request.app
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(app[STORE].ping(), HEALTH_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # health endpoint: report, never raise
        checks["database"] = f"error: {type(exc).__name__}"
    checks.update(app[BRAIN].health())
    healthy = all(v == "ok" or v.startswith("ok") for v in checks.values())
    return web.json_response({"status": "ok" if healthy else "degraded", **checks},
                             status=200 if healthy else 503)


async def freeze_startup_objects(app: web.Application) -> None:
    """Everything loaded at start (models, dictionaries, the knowledge base) lives as long as the process:
    keep it out of the garbage collector's full passes, which otherwise stall requests now and then
    (bench/load.py: p99 171 → 87 ms). For the server process only, not for apps made in tests."""
    gc.collect()
    gc.freeze()
