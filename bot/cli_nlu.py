"""CLI commands: ``nlu train|parse|eval`` and ``rasa setup|train|serve``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.settings import Settings


def add_nlu_commands(sub: Any) -> None:
    """Register the ``nlu`` and ``rasa`` command groups."""
    nlu = sub.add_parser("nlu", help="train, try and evaluate the intent classifier")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", metavar="ACTION", required=True)
    train = nlu_sub.add_parser("train", help="train the built-in engine from data/ (cached under var/)")
    train.add_argument("--force", action="store_true", help="retrain even if the cached model matches the data")
    train.set_defaults(func=cmd_nlu_train)
    parse = nlu_sub.add_parser("parse", help="one message per line on stdin → one JSON object per line")
    parse.add_argument("--engine", choices=("builtin", "rasa"), default=None, help="default: NLU_ENGINE")
    parse.set_defaults(func=cmd_nlu_parse)
    evaluate = nlu_sub.add_parser("eval", help="score an engine on the held-out test split (data/nlu/test)")
    evaluate.add_argument("--engine", choices=("builtin", "rasa"), default=None, help="default: NLU_ENGINE")
    evaluate.set_defaults(func=cmd_nlu_eval)
    from bot.cli_learning import add_learning_commands

    add_learning_commands(nlu_sub)

    rasa = sub.add_parser("rasa", help="the Rasa engine in its own Python 3.10 environment (.venv-rasa)")
    rasa_sub = rasa.add_subparsers(dest="rasa_command", metavar="ACTION", required=True)
    setup = rasa_sub.add_parser("setup", help="create .venv-rasa and install Rasa Open Source 3.6.21")
    setup.set_defaults(func=cmd_rasa_setup)
    rtrain = rasa_sub.add_parser("train", help="train a Rasa model from data/ into var/rasa/models")
    rtrain.add_argument("--fast", action="store_true", help="the CI pipeline (fewer epochs, lookup-table entities)")
    rtrain.add_argument("--epochs", type=int, default=None, help="override DIETClassifier epochs")
    rtrain.set_defaults(func=cmd_rasa_train)
    serve = rasa_sub.add_parser("serve", help="rasa run --enable-api on RASA_URL's port, bound to 127.0.0.1")
    serve.set_defaults(func=cmd_rasa_serve)


def _settings(engine: str | None = None) -> Settings:
    settings = Settings.from_env(demo=True)
    return settings.replace(nlu_engine=engine) if engine else settings


def cmd_nlu_train(args: argparse.Namespace) -> int:
    from nlu.builtin import load_or_train, warm_up

    settings = _settings()
    warm_up()
    model, trained = load_or_train(settings.data_dir, settings.var_dir / "nlu", force=args.force)
    state = f"trained in {model.trained_seconds:.1f} s" if trained else "up to date (cached)"
    print(f"built-in model {model.key}: {state}; {len(model.classes)} intents, {len(model.vocabulary)} features")
    return 0


def cmd_nlu_parse(args: argparse.Namespace) -> int:
    settings = _settings(args.engine)
    return asyncio.run(_parse(settings))


async def _parse(settings: Settings) -> int:
    from bot.runtime import Offline

    async with Offline(settings) as offline:
        for line in sys.stdin:
            text = line.rstrip("\n")
            if not text.strip():
                continue
            result = await offline.understand(text)
            print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


def cmd_nlu_eval(args: argparse.Namespace) -> int:
    settings = _settings(args.engine)
    return asyncio.run(_eval(settings))


async def _eval(settings: Settings) -> int:
    from bot.runtime import Offline
    from nlu.data import load_examples
    from nlu.evaluate import evaluate, save

    async with Offline(settings) as offline:
        assert offline.services is not None
        nlu = offline.services.nlu
        examples = load_examples([settings.data_dir / "nlu" / "test"])
        report = await evaluate(examples, nlu.understand, settings.nlu_engine)
    md, png = save(report, settings.var_dir / "reports")
    print(report.markdown().split("\n| intent")[0].rstrip())
    if settings.nlu_engine == "rasa":
        print(f"- answered by rasa: {nlu.stats['rasa']}, fell back to built-in: {nlu.stats['rasa_fallbacks']}")
    print(f"\nreport: {md}\nconfusion matrix: {png}")
    return 0


def cmd_rasa_setup(args: argparse.Namespace) -> int:
    from nlu.rasa_env import setup

    return setup()


def cmd_rasa_train(args: argparse.Namespace) -> int:
    from nlu.rasa_env import train

    settings = _settings()
    return train(settings, fast=args.fast, epochs=args.epochs)


def cmd_rasa_serve(args: argparse.Namespace) -> int:
    from nlu.rasa_env import serve

    return serve(_settings())
