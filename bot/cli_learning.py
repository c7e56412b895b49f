"""CLI commands: ``nlu export-examples`` and ``nlu retrain`` (the console's retraining, in the foreground)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bot.settings import Settings


def add_learning_commands(nlu_sub: Any) -> None:
    """Register under ``python -m bot nlu``."""
    export = nlu_sub.add_parser("export-examples",
                                help="write the training examples added in the console as data/ YAML")
    export.add_argument("--out", type=Path, default=None, help="default: data/nlu/train/console.yml")
    export.set_defaults(func=cmd_export_examples)
    retrain = nlu_sub.add_parser("retrain", help="train on data/ plus the console's examples, evaluate, and make "
                                                 "the model live if emergency recall does not drop")
    retrain.add_argument("--author", default="cli", help="recorded as who started the job")
    retrain.set_defaults(func=cmd_retrain)


def cmd_export_examples(args: argparse.Namespace) -> int:
    settings = Settings.from_env(demo=True)
    out = args.out or settings.data_dir / "nlu" / "train" / "console.yml"

    async def run() -> int:
        from bot.storage.db import make_engine, make_sessionmaker, migrate
        from nlu.retrain import export_examples

        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            count = await export_examples(make_sessionmaker(engine), out)
        finally:
            await engine.dispose()
        print(f"exported {count} examples to {out}")
        return 0

    return asyncio.run(run())


def cmd_retrain(args: argparse.Namespace) -> int:
    settings = Settings.from_env(demo=True)

    async def run() -> int:
        from bot.storage.db import make_engine, make_sessionmaker, migrate
        from nlu.retrain import LearningError, Retrainer

        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            retrainer = Retrainer(make_sessionmaker(engine), settings.data_dir, settings.var_dir / "nlu")
            try:
                job_id = await retrainer.start(args.author)
            except LearningError as exc:
                print(exc)
                return 1
            last = None
            while True:
                job = await retrainer.job(job_id)
                assert job is not None
                line = f"#{job_id} {job['status']} {job['progress']:3d}% {job['stage']}"
                if line != last:
                    print(line, flush=True)
                    last = line
                if not job["running"]:
                    break
                await asyncio.sleep(1.0)
            await retrainer.wait()
            return 0 if job["status"] == "active" else 1
        finally:
            await engine.dispose()

    return asyncio.run(run())
