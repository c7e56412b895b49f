"""Plays WeChat's server against the bot: builds, signs, encrypts and POSTs messages."""

from __future__ import annotations

import io
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.wechat.crypto import MessageCrypto, cdata_safe, parse_xml_fields, sign

ACCOUNT = "gh_lingbao_test"
_ids = itertools.count(7_000_000_000_000_000_000)


def cdata(name: str, value: str) -> str:
    return f"<{name}><![CDATA[{cdata_safe(value)}]]></{name}>"


def xml_message(openid: str, msg_type: str, *, msg_id: int | None = None, create_time: int | None = None,
                **fields: Any) -> str:
    """A plaintext WeChat push. ``fields`` become elements (numbers bare, text in CDATA)."""
    parts = [cdata("ToUserName", ACCOUNT), cdata("FromUserName", openid),
             f"<CreateTime>{create_time or int(time.time())}</CreateTime>", cdata("MsgType", msg_type)]
    for name, value in fields.items():
        parts.append(f"<{name}>{value}</{name}>" if isinstance(value, (int, float)) else cdata(name, str(value)))
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id if msg_id is not None else next(_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def text(openid: str, content: str, **kw: Any) -> str:
    return xml_message(openid, "text", Content=content, **kw)


def event(openid: str, name: str, **fields: Any) -> str:
    return xml_message(openid, "event", Event=name, **fields)


@dataclass
class Reply:
    status: int
    body: str
    text: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeChatSender:
    """Signs (and in safe mode encrypts) like WeChat, and opens the bot's replies."""

    base: str
    token: str
    app_id: str
    aes_key: str | None
    http: aiohttp.ClientSession

    @property
    def crypto(self) -> MessageCrypto | None:
        return MessageCrypto(self.token, self.aes_key, self.app_id) if self.aes_key else None

    def signed_params(self, *, timestamp: str | None = None, nonce: str | None = None,
                      encrypted: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        params = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if encrypted is not None:
            params.update(encrypt_type="aes", msg_signature=sign(self.token, timestamp, nonce, encrypted))
        return params

    async def post(self, xml: str, *, params: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
        """Deliver one message the way WeChat does and decode the reply."""
        body = xml.encode("utf-8")
        if params is None:
            if self.crypto is not None:
                timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
                envelope = self.crypto.encrypt(xml, nonce, timestamp)
                encrypted = str(parse_xml_fields(envelope)["Encrypt"])
                params = self.signed_params(timestamp=timestamp, nonce=nonce, encrypted=encrypted)
                body = envelope.encode()
            else:
                params = self.signed_params()
        return await self.post_raw(body, params, timeout=timeout)

    async def post_raw(self, body: bytes, params: dict[str, str], timeout: float = 10.0) -> Reply:
        data = io.BytesIO(body) if len(body) > 512 * 1024 else body
        async with self.http.post(f"{self.base}/wechat", params=params, data=data,
                                  timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.text()
        reply = Reply(response.status, raw)
        if response.status == 200 and raw not in ("", "success"):
            reply.fields = self.open(raw)
            reply.text = reply.fields.get("Content")
        return reply

    def open(self, raw: str) -> dict[str, Any]:
        """Parse a passive reply, decrypting and checking its signature in safe mode."""
        fields = parse_xml_fields(raw)
        if "Encrypt" in fields:
            assert self.crypto is not None
            inner = self.crypto.decrypt(str(fields["Encrypt"]), str(fields["MsgSignature"]),
                                        str(fields["TimeStamp"]), str(fields["Nonce"]))
            return parse_xml_fields(inner)
        return fields
