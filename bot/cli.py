"""``python -m bot``: serve, migrate, and the NLU / knowledge-base / Rasa commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.settings import Settings

log = logging.getLogger("bot")

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Lingbao (领保) consular-help bot")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the bot (webhook, console, demo simulator)")
    serve.add_argument("--demo", action="store_true", help="generated credentials, simulator page, stand-in WeChat API")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=cmd_migrate)

    purge = sub.add_parser("purge", help="delete message text older than BOT_RETENTION_DAYS (metadata and audit stay)")
    purge.set_defaults(func=cmd_purge)

    from bot.cli_kb import add_kb_commands
    from bot.cli_nlu import add_nlu_commands
    from bot.cli_staff import add_staff_commands

    add_nlu_commands(sub)
    add_kb_commands(sub)
    add_staff_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(demo=args.demo)
    from bot.app import create_app, freeze_startup_objects

    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # after the runtime has loaded everything
    if settings.demo:
        app.on_startup.append(_announce_demo)
    log.info("starting Lingbao on http://%s:%d (engine=%s, database=%s)", settings.host, settings.port,
             settings.nlu_engine, _redact_url(settings.database_url))
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, loop=event_loop())
    return 0


async def _announce_demo(app: web.Application) -> None:
    from bot.app import SETTINGS

    settings = app[SETTINGS]
    lines = [
        "",
        "  Lingbao demo is running.",
        f"  WeChat simulator: http://{settings.host}:{settings.port}/",
        f"  Health:           http://{settings.host}:{settings.port}/healthz",
    ]
    from bot.app import DEMO_LOGIN

    lines.extend(app.get(DEMO_LOGIN, []))
    print("\n".join(lines) + "\n", flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env(demo=True)
    from bot.storage.db import migrate

    asyncio.run(migrate(settings.database_url))
    print(f"database at {_redact_url(settings.database_url)} is up to date")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    settings = Settings.from_env(demo=True)

    async def run() -> int:
        from bot.retention import purge
        from bot.storage.db import make_engine, make_sessionmaker, migrate

        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            result = await purge(make_sessionmaker(engine), settings.retention_days)
        finally:
            await engine.dispose()
        print(f"purged text older than {settings.retention_days} days: {result.messages} messages, "
              f"{result.cases} case quotes, {result.notes} notes")
        return 0

    return asyncio.run(run())


def _redact_url(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
