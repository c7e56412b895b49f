"""RasaClient against a tiny real HTTP server standing in for `rasa run --enable-api`, and the built-in fallback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils, web

from nlu.engine import NLU, RasaClient
from tests.nlu.conftest import DATA

TIMEOUT = 0.3
SLOW = 1.0
Load = Callable[..., NLU]


@dataclass
class FakeRasa:
    """Records what it was asked; each route prefix behaves differently."""

    server: test_utils.TestServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def url(self, prefix: str) -> str:
        return str(self.server.make_url(f"/{prefix}")).rstrip("/")


def make_app(fake: dict[str, Any]) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        body = await request.json()
        fake["requests"].append({"json": body, "query": dict(request.query), "path": request.path})
        ranking = fake["answers"].get(body["text"]) or [
            {"name": "faq", "confidence": 0.6}, {"name": "nlu_fallback", "confidence": 0.2},
            {"name": "greet", "confidence": 0.2}]
        best = ranking[0]
        return web.json_response({"text": body["text"], "intent": best, "entities": [], "intent_ranking": ranking})

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        fake["requests"].append({"path": request.path})
        await asyncio.sleep(SLOW)
        return web.json_response({"intent_ranking": [{"name": "greet", "confidence": 1.0}]})

    async def error(request: web.Request) -> web.Response:
        fake["requests"].append({"path": request.path})
        return web.json_response({"error": "model not loaded"}, status=500)

    async def garbage(request: web.Request) -> web.Response:
        fake["requests"].append({"path": request.path})
        return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")

    async def no_ranking(request: web.Request) -> web.Response:
        fake["requests"].append({"path": request.path})
        return web.json_response({"text": "x", "intent": {"name": "faq", "confidence": 0.9}})

    async def bad_confidence(request: web.Request) -> web.Response:
        fake["requests"].append({"path": request.path})
        return web.json_response({"intent_ranking": [{"name": "faq", "confidence": "high"}]})

    async def not_a_dict(request: web.Request) -> web.Response:
        fake["requests"].append({"path": request.path})
        return web.json_response(["faq", 0.9])

    app = web.Application()
    for prefix, handler in (("ok", ok), ("slow", slow), ("error", error), ("garbage", garbage),
                            ("no_ranking", no_ranking), ("bad_confidence", bad_confidence),
                            ("not_a_dict", not_a_dict)):
        app.router.add_post(f"/{prefix}/model/parse", handler)
    return app


@pytest.fixture
async def rasa() -> AsyncIterator[FakeRasa]:
    state: dict[str, Any] = {"requests": [], "answers": {}}
    server = test_utils.TestServer(make_app(state), host="127.0.0.1")
    await server.start_server()
    fake = FakeRasa(server, state["requests"], state["answers"])
    yield fake
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def load(nlu: NLU, nlu_cache: Path, http: aiohttp.ClientSession) -> Callable[..., NLU]:
    """NLU.load with a RasaClient; the session fixture has already cached the model, so nothing trains here."""
    del nlu

    def make(url: str, **kwargs: Any) -> NLU:
        return NLU.load(DATA, nlu_cache, rasa=RasaClient(http, url, timeout=TIMEOUT, **kwargs))

    return make


async def test_rasa_answer_is_used(rasa: FakeRasa, load: Load) -> None:
    engine = load(rasa.url("ok"))
    result = await engine.understand("護照丟了ＡＢＣ 怎麼辦")
    assert result.engine == "rasa"
    # nlu_fallback is dropped from Rasa's ranking and the rest renormalised
    assert result.intent == "faq"
    assert result.confidence == pytest.approx(0.75)
    assert result.ranking == [("faq", pytest.approx(0.75)), ("greet", pytest.approx(0.25))]
    assert engine.stats == {"rasa": 1, "rasa_fallbacks": 0, "builtin": 0}
    # Rasa is sent the normalised text
    assert rasa.requests == [{"json": {"text": "护照丢了abc 怎么办"}, "query": {}, "path": "/ok/model/parse"}]


async def test_token_is_sent(rasa: FakeRasa, load: Load) -> None:
    engine = load(rasa.url("ok"), token="s3cret")
    await engine.understand("你好")
    assert rasa.requests[0]["query"] == {"token": "s3cret"}


async def test_safety_net_applies_to_rasa_too(rasa: FakeRasa, load: Load) -> None:
    rasa.answers["救命 我被绑架了"] = [{"name": "faq", "confidence": 0.9},
                                  {"name": "emergency_kidnap", "confidence": 0.05},
                                  {"name": "greet", "confidence": 0.05}]
    engine = load(rasa.url("ok"))
    result = await engine.understand("救命 我被绑架了")
    assert (result.engine, result.intent, result.safety_net) == ("rasa", "emergency_kidnap", True)
    assert result.confidence >= engine.floor


async def test_rasa_low_confidence_is_fallback(rasa: FakeRasa, load: Load) -> None:
    rasa.answers["嗯"] = [{"name": "faq", "confidence": 0.2}, {"name": "greet", "confidence": 0.2},
                         {"name": "thank", "confidence": 0.2}, {"name": "goodbye", "confidence": 0.2},
                         {"name": "out_of_scope", "confidence": 0.2}]
    engine = load(rasa.url("ok"))
    result = await engine.understand("嗯")
    assert (result.engine, result.intent) == ("rasa", "nlu_fallback")


async def test_slow_rasa_falls_back_to_builtin(rasa: FakeRasa, load: Load) -> None:
    engine = load(rasa.url("slow"))
    reasons: list[str] = []
    engine.on_rasa_fallback = reasons.append
    started = time.monotonic()
    result = await engine.understand("救命 我被绑架了")
    elapsed = time.monotonic() - started
    assert result.engine == "builtin"
    assert result.intent == "emergency_kidnap"
    assert elapsed < SLOW  # the deadline was kept, not Rasa's pace
    assert engine.stats == {"rasa": 0, "rasa_fallbacks": 1, "builtin": 1}
    assert len(reasons) == 1 and "Timeout" in reasons[0]
    await engine.understand("你好")
    assert engine.stats["rasa_fallbacks"] == 2  # every message tries Rasa again
    assert len(rasa.requests) == 2


@pytest.mark.parametrize("prefix", ["error", "garbage", "no_ranking", "bad_confidence", "not_a_dict"])
async def test_broken_rasa_falls_back_to_builtin(rasa: FakeRasa, load: Load, prefix: str) -> None:
    engine = load(rasa.url(prefix))
    result = await engine.understand("我在迪拜被警察抓走了")
    assert result.engine == "builtin"
    assert result.intent == "emergency_arrest"
    assert result.country == "AE"
    assert engine.stats == {"rasa": 0, "rasa_fallbacks": 1, "builtin": 1}
    assert len(rasa.requests) == 1


async def test_unreachable_rasa_falls_back_to_builtin(load: Load) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = load(f"http://127.0.0.1:{port}")
    result = await engine.understand("谢谢")
    assert (result.engine, result.intent) == ("builtin", "thank")
    assert engine.stats["rasa_fallbacks"] == 1


async def test_rasa_recovers(rasa: FakeRasa, load: Load) -> None:
    """A fallback is per message: when Rasa answers again, it is used again."""
    broken = load(rasa.url("error"))
    assert (await broken.understand("你好")).engine == "builtin"
    broken.rasa = RasaClient(broken.rasa.http, rasa.url("ok"), timeout=TIMEOUT)  # type: ignore[union-attr]
    assert (await broken.understand("你好")).engine == "rasa"
    assert broken.stats == {"rasa": 1, "rasa_fallbacks": 1, "builtin": 1}
