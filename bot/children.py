"""Helper processes of the server (the NLU worker, the SQLite writer): starting, talking to and stopping them.

Each is ``python -m <module>`` with the server's interpreter and code, talking over its stdin and stdout in
frames (a 4-byte big-endian length, then a pickle); it exits when the server closes its stdin, also when the
server dies. The server reads the child's frames straight in the pipe's callback, so an answer reaches its
waiter in the same pass of the event loop (a stream reader would take one pass more for every answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
HEADER = struct.Struct(">I")  # a frame's length, then the pickle


class Child:
    """A running helper process: ``write`` bytes to its stdin; each frame it sends goes to ``on_frame``."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _Pipes) -> None:
        self.transport = transport
        self.protocol = protocol
        self.pid: int = transport.get_pid()
        self.stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))  # uvloop's is not a subclass

    @classmethod
    async def start(cls, module: str, *args: str, on_frame: Callable[[Any], None]) -> Child:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        transport, protocol = await asyncio.get_running_loop().subprocess_exec(
            lambda: _Pipes(on_frame), sys.executable, "-m", module, *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None, env=dict(os.environ, PYTHONPATH=path))
        return cls(transport, protocol)

    @property
    def running(self) -> bool:
        return not self.protocol.exited.done() and not self.stdin.is_closing()

    def write(self, data: bytes) -> None:
        self.stdin.write(data)

    async def wait(self) -> None:
        """Until the child has exited (or sent something unreadable, which ends it too)."""
        await asyncio.shield(self.protocol.exited)

    async def stop(self, timeout: float = 30.0) -> None:
        """Close its stdin (a healthy child finishes what it holds and exits), kill it if it does not, collect it."""
        self.stdin.close()
        try:
            await asyncio.wait_for(self.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await self.wait()
        self.transport.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.transport.kill()


class _Pipes(asyncio.SubprocessProtocol):
    def __init__(self, on_frame: Callable[[Any], None]) -> None:
        self.on_frame = on_frame
        self.buffer = bytearray()
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1 or self.exited.done():
            return
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            size = HEADER.unpack_from(self.buffer)[0]
            if len(self.buffer) < HEADER.size + size:
                return
            payload = bytes(self.buffer[HEADER.size:HEADER.size + size])
            del self.buffer[:HEADER.size + size]
            try:
                message = pickle.loads(payload)
            except Exception as exc:  # our own child sent garbage: treat it as gone
                self._end(exc)
                return
            self.on_frame(message)

    def process_exited(self) -> None:
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        if not self.exited.done():
            if error is None:
                self.exited.set_result(None)
            else:
                self.exited.set_exception(error)
