"""A fake of api.weixin.qq.com: a real aiohttp server on a free port that records every call.

Behaviour is scripted per test: ``fail_next`` queues error answers for custom/send, ``rotate``
makes the current token invalid (as another process's force refresh would), ``delay`` slows
answers down, ``token_delay`` slows stable_token only, ``go_offline`` closes the port (connections
refused) until ``come_back`` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Sent:
    openid: str
    msgtype: str
    text: str | None
    body: dict[str, Any]


@dataclass
class FakeWeChatAPI:
    app_id: str
    app_secret: str
    tokens_issued: int = 0
    token_requests: int = 0  # every call to stable_token, whatever it answered
    token_delay: float = 0.0
    valid_tokens: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    typing: list[dict[str, Any]] = field(default_factory=list)
    send_errors: list[dict[str, Any]] = field(default_factory=list)
    errors_by_openid: dict[str, dict[str, Any]] = field(default_factory=dict)
    delay: float = 0.0
    delay_by_openid: dict[str, float] = field(default_factory=dict)  # seconds before answering a send to them
    expires_in: int = 7200
    always_invalid: bool = False
    http_status: int = 200
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None
    _port: int | None = None
    received: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        assert self._port is not None
        return f"http://127.0.0.1:{self._port}"

    def fail_next(self, errcode: int, errmsg: str = "scripted", times: int = 1) -> None:
        self.send_errors.extend({"errcode": errcode, "errmsg": errmsg} for _ in range(times))

    def rotate(self) -> None:
        """Invalidate every token issued so far."""
        self.valid_tokens.clear()

    def texts_for(self, openid: str) -> list[str]:
        return [s.text or "" for s in self.sent if s.openid == openid]

    async def wait_for_sent(self, count: int, timeout: float = 10.0) -> list[Sent]:
        """Wait until at least ``count`` messages were sent."""
        async def _wait() -> None:
            while len(self.sent) < count:
                self.received.clear()
                await self.received.wait()
        await asyncio.wait_for(_wait(), timeout)
        return self.sent

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        app.router.add_post("/cgi-bin/message/custom/typing", self._typing)
        self._server = TestServer(app, host="127.0.0.1", port=self._port)
        await self._server.start_server()
        self._port = self._server.port

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def go_offline(self) -> None:
        """Stop listening: calls now fail with a refused connection, as if WeChat were unreachable."""
        await self.close()

    async def come_back(self) -> None:
        """Listen again on the same port (tokens issued before are still valid)."""
        await self.start()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        await self._slow()
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        body = await request.json()
        if body.get("appid") != self.app_id or body.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if self.valid_tokens and not body.get("force_refresh"):
            return web.json_response({"access_token": next(iter(self.valid_tokens)), "expires_in": self.expires_in})
        self.tokens_issued += 1
        token = f"TOKEN_{next(self._counter)}"
        self.valid_tokens = {token}
        return web.json_response({"access_token": token, "expires_in": self.expires_in})

    async def _send(self, request: web.Request) -> web.Response:
        await self._slow()
        if self.http_status != 200:
            return web.Response(status=self.http_status, text="upstream trouble")
        token = request.query.get("access_token", "")
        if self.always_invalid or token not in self.valid_tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = json.loads(await request.read())
        openid = str(body.get("touser"))
        if openid in self.delay_by_openid:
            await asyncio.sleep(self.delay_by_openid[openid])
        if openid in self.errors_by_openid:
            return web.json_response(self.errors_by_openid[openid])
        if self.send_errors:
            return web.json_response(self.send_errors.pop(0))
        text = body.get("text", {}).get("content") if body.get("msgtype") == "text" else None
        self.sent.append(Sent(openid, str(body.get("msgtype")), text, body))
        self.received.set()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _typing(self, request: web.Request) -> web.Response:
        self.typing.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _slow(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
