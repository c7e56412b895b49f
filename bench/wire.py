"""Lean HTTP/1.1 on asyncio protocols for the benchmarks' stand-ins of WeChat's servers.

WeChat's servers are not on the bot's machine, but here the load generator and the fake customer-service
API share its two cores with the server under test. Through aiohttp's client the load generator spent
about 180 µs of CPU per message (0.17 of a core at 1,000 messages per second), work that would be
WeChat's in production. These keep-alive connections do only what a benchmark needs: send a prepared
request, read the status and the body (Content-Length or chunked), and answer a fixed JSON body per path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit


class HTTPError(Exception):
    """The server closed the connection, sent something that is not HTTP/1.1, or did not answer in time."""


class Connection(asyncio.Protocol):
    """One keep-alive client connection: one request at a time, like each of WeChat's pushes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = parse_response(self.buffer)
        except HTTPError as exc:
            self._fail(exc)
            return
        if parsed is not None:
            status, body, used = parsed
            del self.buffer[:used]
            self.waiter.set_result((status, body))

    async def request(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send a request whose head (request line and headers, without Content-Length) is ``head``."""
        if self.closed or self.transport is None:
            raise HTTPError("connection closed")
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.transport.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        timer = loop.call_later(timeout, self._fail, HTTPError("timed out"))
        try:
            return await waiter
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
            if self.transport is not None:  # what the server sends after a failure is not trusted
                self.transport.close()


class Client:
    """A keep-alive connection to one server, opened on first use and again after the server closed it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.connection: Connection | None = None

    async def request(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        """``Connection.request`` on this client's connection (``OSError`` when it cannot be opened)."""
        if self.connection is None or self.connection.closed:
            self.connection = await Connection.open(self.host, self.port)
        return await self.connection.request(head, body, timeout)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def post_head(url: str, params: dict[str, str], content_type: str = "text/xml") -> bytes:
    """The head of a POST to ``url`` with ``params`` as its query."""
    parts = urlsplit(url)
    return (f"POST {parts.path}?{urlencode(params)} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {content_type}\r\n").encode()


def parse_response(buffer: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first complete response in ``buffer``, or None until it is complete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return _chunked(buffer, int(parts[1]), start)
    length = int(headers.get(b"content-length", b"0"))
    if len(buffer) < start + length:
        return None
    return int(parts[1]), bytes(buffer[start:start + length]), start + length


def _chunked(buffer: bytearray, status: int, at: int) -> tuple[int, bytes, int] | None:
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if len(buffer) < at + size + 2:
            return None
        if size == 0:
            return status, bytes(body), at + 2
        body += buffer[at:at + size]
        at += size + 2


class JSONServer(asyncio.Protocol):
    """Answers every request with the fixed JSON body its path maps to (404 for others), keep-alive."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            path = lines[0].split(b" ")[1].split(b"?")[0].decode()
            body = self.answers.get(path)
            status = b"200 OK" if body is not None else b"404 Not Found"
            body = body if body is not None else b'{"errcode": 404}'
            self.transport.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (status, len(body), body))


async def serve_json(host: str, port: int, answers: dict[str, bytes]) -> None:
    """Serve ``answers`` (path → JSON body) until cancelled."""
    factory: Callable[[], JSONServer] = lambda: JSONServer(answers)  # noqa: E731
    server = await asyncio.get_running_loop().create_server(factory, host, port)
    async with server:
        await server.serve_forever()
