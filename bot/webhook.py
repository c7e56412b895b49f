"""``GET/POST /wechat``: verify, decrypt, parse, hand to the pipeline, reply inside the budget."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from bot.errors import BadRequest, Forbidden
from bot.metrics import Metrics
from bot.pipeline import SAFE_REPLY, Pipeline
from bot.settings import Settings
from bot.wechat.crypto import MessageCrypto, check_request, envelope_ciphertext
from bot.wechat.messages import Inbound, parse_inbound, render_text_reply

log = logging.getLogger(__name__)

SUCCESS = "success"
RECORD_ATTEMPTS = 3


class Webhook:
    """The WeChat endpoint; knows the protocol, not the conversation."""

    def __init__(self, settings: Settings, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.crypto = (MessageCrypto(settings.wechat_token, settings.encoding_aes_key, settings.app_id)
                       if settings.safe_mode else None)

    async def verify(self, request: web.Request) -> web.Response:
        """URL verification: echo ``echostr`` after a valid signature."""
        query = request.query
        try:
            self._check(query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        except Forbidden as exc:
            return web.Response(status=403, text=str(exc))
        return web.Response(text=query.get("echostr", ""), content_type="text/plain")

    async def receive(self, request: web.Request) -> web.Response:
        """One pushed message or event (timed and counted)."""
        arrived = time.monotonic()
        response = await self._receive(request, arrived)
        if self.metrics is not None:
            self.metrics.webhook.observe(time.monotonic() - arrived)
            self.metrics.responses.labels(status=str(response.status)).inc()
        return response

    async def _receive(self, request: web.Request, arrived: float) -> web.Response:
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        try:
            self._check(query.get("signature", ""), timestamp, nonce)
            body = await request.read()  # aiohttp answers 413 past client_max_size (1 MiB)
            encrypted = query.get("encrypt_type", "raw").lower() == "aes"
            msg = self._open(body, encrypted, query.get("msg_signature", ""), timestamp, nonce)
        except Forbidden as exc:
            return web.Response(status=403, text=str(exc))
        except BadRequest as exc:
            log.info("rejected webhook body: %s", exc)
            return web.Response(status=400, text=str(exc))
        reply = await self._answer(msg, arrived)
        if reply is None:
            return web.Response(text=SUCCESS, content_type="text/plain")
        xml = render_text_reply(msg, reply)
        if encrypted and self.crypto is not None:
            xml = self.crypto.encrypt(xml, nonce or secrets.token_hex(8), str(int(time.time())))
        return web.Response(text=xml, content_type="application/xml")

    def _check(self, signature: str, timestamp: str, nonce: str) -> None:
        check_request(self.settings.wechat_token, signature, timestamp, nonce,
                      tolerance=self.settings.timestamp_tolerance)

    def _open(self, body: bytes, encrypted: bool, msg_signature: str, timestamp: str, nonce: str) -> Inbound:
        if self.crypto is not None:
            if not encrypted:
                # In safe mode the URL signature does not cover a plaintext body: refuse it.
                raise Forbidden("plaintext message while safe mode is configured")
            xml = self.crypto.decrypt(envelope_ciphertext(body), msg_signature, timestamp, nonce)
            return parse_inbound(xml)
        if encrypted:
            raise BadRequest("encrypted message but no EncodingAESKey configured")
        return parse_inbound(body)

    async def _answer(self, msg: Inbound, arrived: float) -> str | None:
        """The pipeline's passive reply; a database error (busy, or the connection lost mid-way) is retried
        on a fresh connection, never a 500 (recording is idempotent: dedup on the channel key)."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                return await self.pipeline.handle(msg, arrived)
            except DBAPIError as exc:
                log.warning("database error recording a message (attempt %d): %s", attempt + 1, type(exc.orig).__name__)
                await asyncio.sleep(0.1 * (attempt + 1))
        # Nothing could be stored: WeChat will re-send; meanwhile the person still gets 12308.
        return SAFE_REPLY
