"""Demo mode: a WeChat simulator page and a stand-in of WeChat's API on the same server.

The simulator does what WeChat's servers do: it signs and encrypts each message (safe mode),
POSTs it to the real ``/wechat`` path, waits 5 s, and re-sends up to twice. Late replies reach
the stand-in API's ``custom/send`` and are shown in the page.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.settings import Settings
from bot.wechat.crypto import MessageCrypto, parse_xml_fields, sign

PAGE = Path(__file__).with_name("simulator.html")
WECHAT_TIMEOUT = 5.0
WECHAT_DELIVERIES = 3


@dataclass
class FakeWeChat:
    """The stand-in for api.weixin.qq.com: hands out tokens and collects customer-service messages."""

    app_id: str
    app_secret: str
    token: str = field(default_factory=lambda: "demo-" + secrets.token_hex(12))
    feeds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def post(self, openid: str, kind: str, text: str) -> None:
        self.feeds[openid].append({"id": next(self.counter), "kind": kind, "text": text, "at": time.time()})
        self.changed.set()


DEMO = web.AppKey("demo_wechat", FakeWeChat)
DEMO_SETTINGS = web.AppKey("demo_settings", Settings)


def setup_demo(app: web.Application, settings: Settings) -> None:
    """Add the simulator page, its send/feed endpoints and the stand-in API."""
    app[DEMO] = FakeWeChat(settings.app_id, settings.app_secret)
    app[DEMO_SETTINGS] = settings
    app.router.add_get("/", simulator_page)
    app.router.add_post("/demo/send", demo_send)
    app.router.add_get("/demo/feed", demo_feed)
    app.router.add_post("/demo-api/cgi-bin/stable_token", api_token)
    app.router.add_post("/demo-api/cgi-bin/message/custom/send", api_send)
    app.router.add_post("/demo-api/cgi-bin/message/custom/typing", api_typing)


async def simulator_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")


def build_xml(openid: str, account: str, spec: dict[str, Any]) -> str:
    """The plaintext XML WeChat would push for the simulator's message ``spec``."""
    now = int(time.time())
    head = (f"<ToUserName><![CDATA[{account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime>")
    kind = spec.get("type", "text")
    msg_id = f"<MsgId>{secrets.randbelow(10**18)}</MsgId>"
    if kind == "text":
        body = f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{_cdata(spec.get('text', ''))}]]></Content>"
        return f"<xml>{head}{body}{msg_id}</xml>"
    if kind == "voice":
        recognition = spec.get("text")
        rec = f"<Recognition><![CDATA[{_cdata(recognition)}]]></Recognition>" if recognition else ""
        return (f"<xml>{head}<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[demo]]></MediaId>"
                f"<Format><![CDATA[amr]]></Format>{rec}{msg_id}</xml>")
    if kind == "location":
        lat, lon = float(spec["lat"]), float(spec["lon"])
        return (f"<xml>{head}<MsgType><![CDATA[location]]></MsgType><Location_X>{lat}</Location_X>"
                f"<Location_Y>{lon}</Location_Y><Scale>15</Scale>"
                f"<Label><![CDATA[{_cdata(spec.get('label', ''))}]]></Label>{msg_id}</xml>")
    if kind == "image":
        return (f"<xml>{head}<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://example.invalid/p.jpg]]>"
                f"</PicUrl><MediaId><![CDATA[demo]]></MediaId>{msg_id}</xml>")
    if kind in ("subscribe", "unsubscribe"):
        return f"<xml>{head}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{kind}]]></Event></xml>"
    if kind == "click":
        return (f"<xml>{head}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>"
                f"<EventKey><![CDATA[{_cdata(spec.get('key', ''))}]]></EventKey></xml>")
    raise web.HTTPBadRequest(text=f"unknown message type {kind!r}")


def _cdata(text: str) -> str:
    return str(text).replace("]]>", "]]]]><![CDATA[>")


async def demo_send(request: web.Request) -> web.Response:
    """Deliver one simulator message to /wechat as WeChat would (signed, encrypted, retried)."""
    settings = request.app[DEMO_SETTINGS]
    try:
        spec = await request.json()
        openid = str(spec["openid"])[:64]
        xml = build_xml(openid, "gh_lingbao_demo", spec)
    except (ValueError, KeyError, TypeError) as exc:
        raise web.HTTPBadRequest(text=f"bad simulator request: {exc}") from None
    crypto = MessageCrypto(settings.wechat_token, settings.encoding_aes_key, settings.app_id)
    url = f"{request.url.origin()}/wechat"
    started = time.monotonic()
    result: dict[str, Any] = {"passive": None, "deliveries": 0}
    async with aiohttp.ClientSession() as http:
        for attempt in range(1, WECHAT_DELIVERIES + 1):
            result["deliveries"] = attempt
            timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
            envelope = crypto.encrypt(xml, nonce, timestamp)
            encrypted = parse_xml_fields(envelope)["Encrypt"]
            params = {"signature": sign(settings.wechat_token, timestamp, nonce), "timestamp": timestamp,
                      "nonce": nonce, "openid": openid, "encrypt_type": "aes",
                      "msg_signature": sign(settings.wechat_token, timestamp, nonce, str(encrypted))}
            try:
                async with http.post(url, params=params, data=envelope.encode(),
                                     timeout=aiohttp.ClientTimeout(total=WECHAT_TIMEOUT)) as response:
                    body = await response.text()
                    result["status"] = response.status
            except asyncio.TimeoutError:
                continue
            result["passive"] = _open_reply(crypto, body)
            break
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return web.json_response(result)


def _open_reply(crypto: MessageCrypto, body: str) -> str | None:
    if body in ("", "success"):
        return None
    fields = parse_xml_fields(body)
    if "Encrypt" not in fields:
        return None
    inner = crypto.decrypt(str(fields["Encrypt"]), str(fields["MsgSignature"]), str(fields["TimeStamp"]),
                           str(fields["Nonce"]))
    content = parse_xml_fields(inner).get("Content")
    return str(content) if content is not None else None


async def demo_feed(request: web.Request) -> web.Response:
    """Customer-service messages the stand-in API received for ``openid`` after id ``after``."""
    wechat = request.app[DEMO]
    openid = request.query.get("openid", "")
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="after must be an integer") from None
    items = [item for item in wechat.feeds.get(openid, []) if item["id"] > after]
    return web.json_response({"items": items})


async def api_token(request: web.Request) -> web.Response:
    wechat = request.app[DEMO]
    body = await request.json()
    if body.get("appid") != wechat.app_id or body.get("secret") != wechat.app_secret:
        return web.json_response({"errcode": 40013, "errmsg": "invalid appid or secret"})
    return web.json_response({"access_token": wechat.token, "expires_in": 7200})


async def api_send(request: web.Request) -> web.Response:
    wechat = request.app[DEMO]
    if request.query.get("access_token") != wechat.token:
        return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
    body = await request.json()
    text = body.get("text", {}).get("content", json.dumps(body, ensure_ascii=False))
    wechat.post(str(body.get("touser", "")), str(body.get("msgtype", "text")), str(text))
    return web.json_response({"errcode": 0, "errmsg": "ok"})


async def api_typing(request: web.Request) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok"})

