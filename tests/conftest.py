"""Shared fixtures: a real database (SQLite, or PostgreSQL where a module asks for both), a fake WeChat API,
the bot on a free port.

A test module marked ``pytestmark = pytest.mark.databases`` runs each of its tests on SQLite and on
PostgreSQL (see tests/databases.py); every other test runs on SQLite only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.settings import Settings
from tests import databases
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import WeChatSender

TOKEN = "lingbaotoken"
APP_ID = "wx2c2769f8efd9abc2"
APP_SECRET = "test-app-secret"
# The official Tencent sample key (shared/reference/wechat-protocol.md, A6).
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "databases: run the module's tests on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "rasa_budget(seconds): RASA_TIMEOUT of the bot processes of a test")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``databases`` run on both backends, unless a test names its own (``postgresql`` only)."""
    if "backend" not in metafunc.fixturenames or not metafunc.definition.get_closest_marker("databases"):
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if "backend" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("backend", BACKENDS, indirect=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    databases.close_postgres()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test runs on: ``sqlite`` unless the module is marked ``databases``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for this test (SQLite file, or a migrated PostgreSQL database)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    if not databases.pg_url():
        if databases.pg_required():
            pytest.fail(f"PostgreSQL is required (LINGBAO_REQUIRE_PG=1) but {databases.PG_URL_VARIABLE} is not set")
        pytest.skip(f"no PostgreSQL for tests ({databases.PG_URL_VARIABLE} not set; scripts/test sets it)")
    url = databases.postgres().fresh_database()
    yield url
    databases.postgres().drop(url)


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeWeChatAPI]:
    api = FakeWeChatAPI(APP_ID, APP_SECRET)
    await api.start()
    yield api
    await api.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, fake_api: FakeWeChatAPI) -> Settings:
    """Safe-mode settings on a fresh database, WeChat's API faked."""
    return Settings(
        database_url=db_url,
        wechat_token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, encoding_aes_key=AES_KEY,
        api_base=fake_api.base, secret_key="s" * 64, var_dir=tmp_path / "var", outbox_poll_interval=0.05,
    )


@dataclass
class Running:
    """The bot serving on a free port, and a WeChat sender pointed at it."""

    app: web.Application
    server: TestServer
    wechat: WeChatSender
    settings: Settings

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the bot's database directly, as an operator would (``?`` placeholders on every backend)."""
        return databases.rows(self.settings.database_url, sql, *args)

    @property
    def postgres(self) -> bool:
        return databases.is_postgres(self.settings.database_url)

    def count(self, table: str, where: str = "1=1", *args: Any) -> int:
        return int(self.rows(f"SELECT COUNT(*) FROM {table} WHERE {where}", *args)[0][0])


StartBot = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_bot(settings: Settings) -> AsyncIterator[StartBot]:
    """Start (and later stop) bot servers; several may run over one database."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(custom: Settings | None = None, **kwargs: Any) -> Running:
        use = custom or settings
        app = create_app(use, **kwargs)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        http = aiohttp.ClientSession()
        sessions.append(http)
        sender = WeChatSender(str(server.make_url("")).rstrip("/"), use.wechat_token, use.app_id,
                              use.encoding_aes_key or None, http)
        return Running(app, server, sender, use)

    yield start
    for http in sessions:
        await http.close()
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def bot(start_bot: StartBot) -> Running:
    return await start_bot()


async def stop(running: Running) -> None:
    """Stop one bot server (as a deploy or a crash-free restart would)."""
    await running.server.close()
