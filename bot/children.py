"""Helper processes of the server (the NLU worker, the SQLite writer): starting, talking to and stopping them.

Each is ``python -m <module>`` with the server's interpreter and code, talking over its stdin and stdout in
frames (a 4-byte big-endian length, then a pickle); it exits when the server closes its stdin, also when the
server dies. The server reads the child's frames straight in the pipe's callback, so an answer reaches its
waiter in the same pass of the event loop (a stream reader would take one pass more for every answer).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
HEADER = struct.Struct(">I")  # a frame's length, then the pickle
# Helpers run at a lower scheduling priority than the server: the server is the one process whose time every
# message waits on (one core's worth, its GIL), so when cores are short it should not queue behind a helper's
# batch. bench/load.py on 2 cores: about 5% more messages per second than at equal priority.
HELPER_NICE = 10


def begin_child() -> BinaryIO:
    """Set up a helper process as it starts: warnings on stderr, a lower priority (see HELPER_NICE), Ctrl-C left
    to the server (a terminal sends it to every process of the group; the server stops its helpers in order,
    by closing their pipes), and stdout kept for frames alone (a stray print must never corrupt one). Returns
    the stream its frames go to."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # not permitted here: run at equal priority
        os.nice(HELPER_NICE)
    frames = sys.stdout.buffer
    sys.stdout = sys.stderr
    return frames


def frame(message: Any) -> bytes:
    """``message`` as a frame: the pickle's length, then the pickle."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def send_frame(stream: BinaryIO, message: Any) -> None:
    """A helper's frame to the server."""
    stream.write(frame(message))
    stream.flush()


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


class Supervised(abc.ABC):
    """Keeps one helper process running: started by ``_supervise``, started again after it dies (with a pause
    that grows with each restart), stopped by ``_stop_supervising``. Subclasses read its frames
    (``_on_frame``), may greet it (``_on_start``) and settle whatever waited on a child that is gone
    (``_on_stop``)."""

    def __init__(self, module: str, *args: str, pause: float, max_pause: float, level: int) -> None:
        self.module, self.args = module, args
        self.pause, self.max_pause, self.level = pause, max_pause, level
        self.child: Child | None = None
        self.restarts = 0
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    @abc.abstractmethod
    def _on_frame(self, message: Any) -> None:
        """A frame from the child."""

    def _on_start(self) -> None:
        """The child is up (its frames may not have come yet)."""

    @abc.abstractmethod
    def _on_stop(self) -> None:
        """The child is gone: settle whatever waited on it."""

    def _begin(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=self.module)

    async def _stop_supervising(self, timeout: float) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.child is not None:
            await self.child.stop(timeout)
        self._on_stop()

    async def _supervise(self) -> None:
        while not self._closing:
            try:
                self.child = await Child.start(self.module, *self.args, on_frame=self._on_frame)
            except OSError as exc:  # cannot even start it (out of processes or memory): keep trying
                log.log(self.level, "%s could not start", self.module, extra={"error": type(exc).__name__})
            else:
                self._on_start()
                try:
                    await self.child.wait()
                except Exception as exc:  # it sent something unreadable: replace it like a dead one
                    log.log(self.level, "%s failed", self.module, extra={"error": type(exc).__name__})
                if not self._closing:
                    log.log(self.level, "%s stopped; starting another", self.module, extra={"pid": self.child.pid})
                self.child.kill()
                await self.child.stop(timeout=5)
                self._on_stop()
            if self._closing:
                return
            self.restarts += 1
            await asyncio.sleep(min(self.pause * self.restarts, self.max_pause))
