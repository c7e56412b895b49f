"""Our WeChat API client against the fake server: token cache, single flight, one retry, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker, migrate
from bot.wechat.api import NetworkError, OutsideWindow, QuotaExceeded, TokenError, WeChatAPI, WeChatAPIError
from tests.fakes.wechat_api import FakeWeChatAPI

pytestmark = pytest.mark.databases


@pytest.fixture
async def clients(settings: Settings, fake_api: FakeWeChatAPI) -> AsyncIterator[list[WeChatAPI]]:
    """Two clients (as two bot processes) sharing one database."""
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    http = aiohttp.ClientSession()
    made = [WeChatAPI(http, sessions, base=fake_api.base, app_id=settings.app_id, app_secret=settings.app_secret,
                      timeout=1.0) for _ in range(2)]
    yield made
    await http.close()
    await engine.dispose()


async def test_token_is_cached_in_the_database_for_every_process(clients: list[WeChatAPI],
                                                                 fake_api: FakeWeChatAPI) -> None:
    first, second = clients
    await first.send_text("oA", "一")
    await first.send_text("oA", "二")
    await second.send_text("oA", "三")
    assert fake_api.tokens_issued == 1
    assert second.token_fetches == 0
    assert fake_api.texts_for("oA") == ["一", "二", "三"]


async def test_one_refresh_in_flight(clients: list[WeChatAPI], fake_api: FakeWeChatAPI) -> None:
    fake_api.delay = 0.1
    await asyncio.gather(*(clients[0].send_text("oB", str(i)) for i in range(10)))
    assert clients[0].token_fetches == 1 and fake_api.tokens_issued == 1


async def test_invalid_token_mid_send_refreshes_once_and_retries(clients: list[WeChatAPI],
                                                                 fake_api: FakeWeChatAPI) -> None:
    api = clients[0]
    await api.send_text("oC", "before")
    fake_api.rotate()  # someone force-refreshed: our cached token is now rejected with 40001
    await api.send_text("oC", "after")
    assert fake_api.texts_for("oC") == ["before", "after"]
    assert fake_api.tokens_issued == 2


async def test_persistent_40001_is_not_retried_recursively(clients: list[WeChatAPI],
                                                           fake_api: FakeWeChatAPI) -> None:
    fake_api.always_invalid = True
    with pytest.raises(TokenError):
        await clients[0].send_text("oD", "x")
    # first fetch, then one refresh (normal mode returned the refused token, so one forced fetch)
    assert clients[0].token_fetches == 3


@pytest.mark.parametrize("code,kind", [(45015, OutsideWindow), (45047, QuotaExceeded), (48001, WeChatAPIError)])
async def test_error_codes_map_to_exceptions(clients: list[WeChatAPI], fake_api: FakeWeChatAPI, code: int,
                                             kind: type[Exception]) -> None:
    fake_api.fail_next(code)
    with pytest.raises(kind) as info:
        await clients[0].send_text("oE", "x")
    assert getattr(info.value, "code") == code


async def test_timeout_is_a_network_error(clients: list[WeChatAPI], fake_api: FakeWeChatAPI) -> None:
    fake_api.delay = 1.5
    with pytest.raises(NetworkError):
        await clients[0].send_text("oF", "x")


async def test_unreachable_api_is_a_network_error(settings: Settings) -> None:
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    async with aiohttp.ClientSession() as http:
        api = WeChatAPI(http, make_sessionmaker(engine), base="http://127.0.0.1:9", app_id="a", app_secret="b",
                        timeout=1.0)
        with pytest.raises(NetworkError):
            await api.send_text("oG", "x")
    await engine.dispose()


async def test_typing(clients: list[WeChatAPI], fake_api: FakeWeChatAPI) -> None:
    await clients[0].typing("oH")
    await clients[0].typing("oH", on=False)
    assert [t["command"] for t in fake_api.typing] == ["Typing", "CancelTyping"]


async def test_expired_token_is_refreshed_before_use(clients: list[WeChatAPI], fake_api: FakeWeChatAPI) -> None:
    fake_api.expires_in = 2  # refreshed after 1.5 s (a quarter early)
    api = clients[0]
    await api.send_text("oI", "一")
    await api.send_text("oI", "二")
    assert api.token_fetches == 1
    await asyncio.sleep(1.6)
    fake_api.rotate()  # the platform now issues a new token on request
    await api.send_text("oI", "三")
    assert api.token_fetches == 2 and fake_api.texts_for("oI") == ["一", "二", "三"]


@pytest.fixture
async def processes(settings: Settings, fake_api: FakeWeChatAPI) -> AsyncIterator[list[WeChatAPI]]:
    """Two clients with an engine (a connection pool) each, as two bot processes on one database have."""
    engines = [make_engine(settings.database_url) for _ in range(2)]
    http = aiohttp.ClientSession()
    yield [WeChatAPI(http, make_sessionmaker(engine), base=fake_api.base, app_id=settings.app_id,
                     app_secret=settings.app_secret, timeout=2.0) for engine in engines]
    await http.close()
    for engine in engines:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # several processes need PostgreSQL
async def test_one_token_refresh_at_a_time_across_processes(processes: list[WeChatAPI],
                                                            fake_api: FakeWeChatAPI) -> None:
    fake_api.token_delay = 0.3  # a slow stable_token: without coordination both processes would call it
    await asyncio.gather(*(api.send_text("oJ", f"{n}-{i}") for n, api in enumerate(processes) for i in range(3)))
    assert fake_api.token_requests == 1
    assert sorted(api.token_fetches for api in processes) == [0, 1]

    fake_api.rotate()  # the token is refused from now on (40001) in both processes at once
    await asyncio.gather(*(api.send_text("oJ", f"again-{n}") for n, api in enumerate(processes)))
    assert fake_api.token_requests == 2, "one process refreshed; the other found the new token in the database"
    assert len(fake_api.texts_for("oJ")) == 8
