"""CLI commands: ``users add`` and ``tokens create | revoke``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.accounts import AccountError, Accounts
from bot.settings import Settings
from bot.storage.staff import ROLES

T = TypeVar("T")


def add_staff_commands(sub: Any) -> None:
    users = sub.add_parser("users", help="staff accounts")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = users_sub.add_parser("add", help="create a staff account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(func=cmd_users_add)
    tokens = sub.add_parser("tokens", help="API bearer tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", help="create a token for NAME (printed as the last word)")
    create.add_argument("name")
    create.set_defaults(func=cmd_tokens_create)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token (the token, or its first 12 characters)")
    revoke.add_argument("token")
    revoke.set_defaults(func=cmd_tokens_revoke)


def _run(operation: Callable[[Accounts], Awaitable[T]]) -> T:
    async def go() -> T:
        from bot.storage.db import make_engine, make_sessionmaker, migrate

        settings = Settings.from_env(demo=True)
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            return await operation(Accounts(make_sessionmaker(engine)))
        finally:
            await engine.dispose()
    return asyncio.run(go())


def cmd_users_add(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    try:
        who = _run(lambda accounts: accounts.add(args.name, args.role, password))
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"added {who.name} ({who.role})")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    try:
        token = _run(lambda accounts: accounts.create_token(args.name))
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"token for {args.name} (shown once): {token}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    count = _run(lambda accounts: accounts.revoke_token(args.token))
    print(f"revoked {count} token(s)")
    return 0 if count else 1
