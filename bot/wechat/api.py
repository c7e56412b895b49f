"""Our own async client for WeChat's API: stable_token, custom/send, custom/typing.

wechatpy's client is synchronous, has no timeout and retries recursively (see
shared/reference/wechat-protocol.md), so it is not used here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import LingbaoError
from bot.storage.locks import TOKEN_LOCKS, process_lock, token_lock_key
from bot.storage.models import WeChatToken, utcnow

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
TRANSIENT_ERRORS = frozenset({-1, 45011})
REFRESH_MARGIN = timedelta(minutes=5)

ERROR_TEXT = {
    -1: "WeChat is busy; will retry",
    40001: "access token invalid",
    40003: "invalid openid",
    40014: "access token invalid",
    42001: "access token expired",
    43004: "the user does not follow the account",
    45009: "daily API quota reached",
    45011: "per-minute API quota reached; will retry",
    45015: "outside the 48-hour window: the person must write again before we can reply",
    45047: "reply quota used up (5 per user message): the person must write again first",
    48001: "the account lacks this API permission",
}


class WeChatAPIError(LingbaoError):
    """WeChat answered with a non-zero ``errcode``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying later."""
        return self.code in TRANSIENT_ERRORS


class TokenError(WeChatAPIError):
    """The access token was rejected (40001/40014/42001)."""


class OutsideWindow(WeChatAPIError):
    """45015: outside the customer-service window."""


class QuotaExceeded(WeChatAPIError):
    """45047: the per-message reply quota is used up."""


class NetworkError(LingbaoError):
    """WeChat could not be reached, or did not answer in time."""

    transient = True
    code = None


def check_response(data: Any) -> dict[str, Any]:
    """Turn WeChat's JSON answer into a dict or a typed exception (the one place that maps codes)."""
    if not isinstance(data, dict):
        raise WeChatAPIError(-2, "answer is not a JSON object")
    code = data.get("errcode", 0)
    if not isinstance(code, int):
        raise WeChatAPIError(-2, f"errcode is not an integer: {code!r}")
    if code == 0:
        return data
    message = str(data.get("errmsg", ""))[:200]
    if code in TOKEN_ERRORS:
        raise TokenError(code, message)
    if code == 45015:
        raise OutsideWindow(code, message)
    if code == 45047:
        raise QuotaExceeded(code, message)
    raise WeChatAPIError(code, message)


class WeChatAPI:
    """Token cache shared through the database, one refresh in flight per process, timeouts everywhere."""

    def __init__(self, http: aiohttp.ClientSession, sessions: async_sessionmaker[AsyncSession], *, base: str,
                 app_id: str, app_secret: str, timeout: float = 5.0) -> None:
        self.http = http
        self.sessions = sessions
        self.base = base.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._token: tuple[str, Any] | None = None
        self._refresh_lock = asyncio.Lock()
        self.token_fetches = 0

    async def send_text(self, openid: str, text: str) -> None:
        """Send a customer-service text message."""
        await self.call("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send(self, openid: str, payload: dict[str, Any]) -> None:
        """Send a customer-service message of any type (``payload`` holds msgtype and its body)."""
        await self.call("/cgi-bin/message/custom/send", {"touser": openid, **payload})

    async def typing(self, openid: str, on: bool = True) -> None:
        """Show or cancel the typing indicator."""
        await self.call("/cgi-bin/message/custom/typing",
                        {"touser": openid, "command": "Typing" if on else "CancelTyping"})

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with the access token; on a token error refresh once and retry once, never more."""
        token = await self.access_token()
        try:
            return await self._post(path, body, token)
        except TokenError:
            log.info("wechat token rejected; refreshing once", extra={"path": path})
            token = await self.access_token(rejected=token)
            return await self._post(path, body, token)

    async def _post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            async with self.http.post(f"{self.base}{path}", params={"access_token": token}, json=body,
                                      timeout=self.timeout) as response:
                if response.status >= 500:
                    raise NetworkError(f"HTTP {response.status} from WeChat")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise NetworkError(f"{type(exc).__name__} calling {path}") from None
        return check_response(data)

    async def access_token(self, rejected: str | None = None) -> str:
        """A valid token: memory, then the shared database row, then ``stable_token`` (single flight).

        One refresh at a time per process (an asyncio lock) and, on PostgreSQL, across processes (an advisory
        lock on the app id), so a process that waited finds the token another one just stored instead of
        fetching one again.
        """
        now = utcnow()
        if self._token and self._token[0] != rejected and self._token[1] > now:
            return self._token[0]
        async with self._refresh_lock, process_lock(self.sessions, TOKEN_LOCKS, token_lock_key(self.app_id)):
            stored = await self._load()
            if stored and stored[0] != rejected and stored[1] > utcnow():
                self._token = stored
                return stored[0]
            token, expires = await self._fetch(force=False)
            if token == rejected:
                # Normal mode handed back the token WeChat just refused: ask for a new one, once.
                token, expires = await self._fetch(force=True)
            self._token = (token, expires)
            await self._store(token, expires)
            return token

    async def _fetch(self, *, force: bool) -> tuple[str, Any]:
        self.token_fetches += 1
        body = {"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret,
                "force_refresh": force}
        try:
            async with self.http.post(f"{self.base}/cgi-bin/stable_token", json=body,
                                      timeout=self.timeout) as response:
                if response.status >= 500:
                    raise NetworkError(f"HTTP {response.status} from stable_token")
                data = check_response(await response.json(content_type=None))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise NetworkError(f"{type(exc).__name__} fetching token") from None
        token = data.get("access_token")
        expires_in = data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WeChatAPIError(-2, "stable_token answer lacks access_token/expires_in")
        # Stored as the time to refresh: five minutes early, or a quarter early for short lifetimes,
        # so a short-lived token is reused for most of its life rather than re-fetched on every call.
        lifetime = timedelta(seconds=max(expires_in, 1))
        return token, utcnow() + lifetime - min(REFRESH_MARGIN, lifetime / 4)

    async def _load(self) -> tuple[str, Any] | None:
        async with self.sessions() as session:
            row = (await session.execute(
                select(WeChatToken.token, WeChatToken.expires_at).where(WeChatToken.app_id == self.app_id)
            )).one_or_none()
            return (row.token, row.expires_at) if row else None

    async def _store(self, token: str, expires: Any) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(WeChatToken, self.app_id)
            if row is None:
                session.add(WeChatToken(app_id=self.app_id, token=token, expires_at=expires, fetched_at=utcnow()))
            else:
                row.token, row.expires_at, row.fetched_at = token, expires, utcnow()
                row.generation += 1
