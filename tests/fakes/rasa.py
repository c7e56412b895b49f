"""A Rasa server that answers ``/model/parse`` only after ``delay`` seconds (a real aiohttp server on a free port).

Pointed at with a ``RASA_TIMEOUT`` below ``delay``, every message spends exactly that timeout in the
classifier and is then understood by the built-in engine: a bot whose answers are the usual ones but
whose handling of each message takes a known, noticeable time.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer


class SlowRasa:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/model/parse", self._parse)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _parse(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        await asyncio.sleep(self.delay)
        return web.json_response({"intent_ranking": [{"name": "greet", "confidence": 1.0}]})
