"""CLI commands: ``kb import | export | validate``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bot.settings import Settings


def add_kb_commands(sub: Any) -> None:
    kb = sub.add_parser("kb", help="knowledge base and country directory: import, export, validate")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="ACTION", required=True)
    imp = kb_sub.add_parser("import", help="import YAML (the data/ layout: kb/*.yml, directory/*.yml) and publish it")
    imp.add_argument("path", type=Path, help="folder holding kb/ and/or directory/")
    imp.add_argument("--author", default="import", help="recorded as the author of the new versions")
    imp.set_defaults(func=cmd_import)
    exp = kb_sub.add_parser("export", help="write the published knowledge base and directory as YAML")
    exp.add_argument("path", type=Path, help="output folder (kb/ and directory/ are created in it)")
    exp.set_defaults(func=cmd_export)
    val = kb_sub.add_parser("validate", help="check YAML files; every problem names file, entry, field and reason")
    val.add_argument("path", type=Path, nargs="?", default=None, help="folder to check (default: data/)")
    val.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from knowledge import seed

    settings = Settings.from_env(demo=True)
    folder = args.path or settings.data_dir
    data = seed.read(folder)
    for problem in data.problems:
        print(problem)
    countries = len(set(data.emergency) | set(data.missions))
    print(f"{len(data.entries)} entries, {countries} countries, {len(data.problems)} problems")
    return 1 if data.problems else 0


def cmd_import(args: argparse.Namespace) -> int:
    return asyncio.run(_import(Settings.from_env(demo=True), args.path, args.author))


async def _import(settings: Settings, folder: Path, author: str) -> int:
    from bot.storage.db import make_engine, make_sessionmaker, migrate
    from knowledge import seed

    data = seed.read(folder)
    if data.problems:
        for problem in data.problems:
            print(problem)
        print(f"nothing imported: {len(data.problems)} problems")
        return 1
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        report = await seed.apply(make_sessionmaker(engine), data, author=author, staff=True)
    finally:
        await engine.dispose()
    print(f"imported: {report.created} new, {report.upgraded} updated, {report.unchanged} unchanged")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return asyncio.run(_export(Settings.from_env(demo=True), args.path))


async def _export(settings: Settings, folder: Path) -> int:
    from bot.runtime import Offline
    from knowledge import seed

    async with Offline(settings) as offline:
        assert offline.sessions is not None
        count = await seed.export(offline.sessions, folder)
    print(f"exported {count} entries and the directory to {folder}")
    return 0
