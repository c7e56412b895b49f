"""The built-in engine in a child process, so classification runs beside the web server, not under its GIL.

Under load the bot process is bound by one core (Python's GIL): receiving, storing and answering
messages share it with jieba and the intent model, about a third of the work per message. On a machine
with a core to spare, ``NLUWorker`` runs that third in a child process (``python -m nlu.worker``)
and the server only waits for the answer.

Messages waiting at the same time go to the child together, at most ``IN_FLIGHT`` batches at a time, so
the child's and the pipe's cost per message falls as load rises and a lone message is sent at once. The
child answers each message as soon as it is classified (its own frame), and ends each batch with a frame
that frees its place.
The child computes exactly what ``NLU.understand_now`` computes in the server (same model, lexicon
and gazetteer), so an answer never depends on where it was classified. Given the knowledge base's
matcher (``set_topics``), the child also ranks its entries from the features it computed anyway, which
spares the server a second tokenisation of every question (``Understanding.topics``).

The worker is an accelerator only: until the child is ready, when it dies or is slower than
``timeout``, ``understand`` returns None and the caller classifies in its own process; a dead or
stuck child is replaced in the background. A retrained model goes to the child before any later
message (one ordered pipe).

Frames both ways are a 4-byte big-endian length and a pickle (parent and child are the same code,
on the same machine; nothing from outside is ever unpickled).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import pickle
import sys
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from bot.children import HEADER, Supervised, begin_child, frame, send_frame
from nlu.builtin import BuiltinModel
from nlu.types import Understanding

log = logging.getLogger(__name__)

MAX_BATCH = 64
IN_FLIGHT = 2  # batches sent and not yet answered: a message need not wait for a whole batch before it


class NLUWorker(Supervised):
    """A child process classifying batches of messages with the built-in engine."""

    def __init__(self, data_dir: Path, *, timeout: float = 1.0, restart_after: float = 1.0) -> None:
        super().__init__("nlu.worker", str(data_dir), pause=restart_after, max_pause=30.0, level=logging.WARNING)
        self.timeout = timeout
        self.model: BuiltinModel | None = None
        self.topics: BuiltinModel | None = None
        self.ready = False
        self.fallbacks = 0
        self._ids = itertools.count()
        self._pending: list[tuple[int, str, asyncio.Future[Understanding | None]]] = []
        self._inflight: collections.deque[dict[int, asyncio.Future[Understanding | None]]] = collections.deque()
        self._flush_scheduled = False

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None and self.ready else None

    async def start(self, model: BuiltinModel) -> None:
        """Start the child with ``model``; it serves once it has loaded (a second or two), in-process until then."""
        self.model = model
        self._begin()

    def swap(self, model: BuiltinModel) -> None:
        """Serve ``model`` from the next batch on (the frame goes ahead of any later batch)."""
        self.model = model
        if self.child is not None and self.child.running:
            self._send(("model", model))

    def set_topics(self, model: BuiltinModel | None) -> None:
        """Rank the knowledge base's entries with ``model`` from the next batch on (None: stop)."""
        if model is self.topics:
            return
        self.topics = model
        if self.child is not None and self.child.running:
            self._send(("topics", model))

    async def understand(self, text: str) -> Understanding | None:
        """The child's understanding of ``text``, or None when the caller should classify it itself."""
        future = self.submit(text)
        return None if future is None else await future

    def submit(self, text: str) -> asyncio.Future[Understanding | None] | None:
        """Queue ``text`` for the child (its batch is written at the end of this loop pass) and return the future of its understanding
        (None there: the caller should classify it itself), or return None at once when the child is not ready.

        The child's answer sets the future directly and a timer (``timeout``) sets it to None, so the answer
        reaches whoever awaits the future in the loop pass after it arrives (``wait_for(shield(…))`` took three
        passes more; each is about a millisecond under load, on every message's path)."""
        if not self.ready:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Understanding | None] = loop.create_future()
        self._pending.append((next(self._ids), text, future))
        if len(self._inflight) < IN_FLIGHT and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)  # after this loop pass, so messages arriving together go together
        timer = loop.call_later(self.timeout, self._too_slow, future)
        future.add_done_callback(partial(self._settled, timer))
        return future

    def _settled(self, timer: asyncio.TimerHandle, future: asyncio.Future[Understanding | None]) -> None:
        timer.cancel()
        if not future.cancelled() and future.result() is None:
            self.fallbacks += 1

    def _too_slow(self, future: asyncio.Future[Understanding | None]) -> None:
        if future.done():
            return
        log.warning("nlu worker too slow; classifying in the server and replacing it", extra={"timeout_s": self.timeout})
        future.set_result(None)
        self._replace()

    async def close(self) -> None:
        await self._stop_supervising(timeout=5)

    # The parent's side of the pipe.

    def _flush(self) -> None:
        self._flush_scheduled = False
        if len(self._inflight) >= IN_FLIGHT or not self._pending or not self.ready:
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._inflight.append({ident: future for ident, _, future in batch})
        self._send(("batch", [(ident, text) for ident, text, _ in batch]))

    def _send(self, message: tuple[str, Any]) -> None:
        assert self.child is not None
        self.child.write(frame(message))

    def _on_start(self) -> None:
        assert self.model is not None
        self._send(("model", self.model))  # the child's first frame, ahead of any batch
        if self.topics is not None:
            self._send(("topics", self.topics))

    def _on_frame(self, message: tuple[str, Any]) -> None:
        kind, body = message
        if kind == "ready":
            self.ready = True
            log.info("nlu worker ready", extra={"pid": body})
        elif kind == "one" and self._inflight:
            ident, result = body  # the oldest batch's next answer (the child answers in the order sent)
            future = self._inflight[0].pop(ident, None)
            if future is not None and not future.done():
                future.set_result(result)  # None where the child failed on this text
        elif kind == "end" and self._inflight:
            for future in self._inflight.popleft().values():  # none left unless the child skipped one
                if not future.done():
                    future.set_result(None)
            self._flush()

    def _replace(self) -> None:
        """A stuck child: stop it; ``_supervise`` fails what waits and starts another."""
        self.ready = False
        if self.child is not None:
            self.child.kill()

    def _on_stop(self) -> None:
        """The child is gone: whatever waits on it is told to classify by itself."""
        self.ready = False
        waiting = [future for batch in self._inflight for future in batch.values()]
        waiting += [future for _, _, future in self._pending]
        self._inflight, self._pending = collections.deque(), []
        for future in waiting:
            if not future.done():
                future.set_result(None)


# The child's side.

def _read(stream: BinaryIO) -> tuple[str, Any] | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None  # the server closed the pipe (or died): stop
    size = HEADER.unpack(header)[0]
    return pickle.loads(stream.read(size))  # type: ignore[no-any-return]


def serve(data_dir: Path, inbound: BinaryIO, outbound: BinaryIO) -> None:
    """Answer frames until the server closes the pipe: the first one must carry the model."""
    from nlu.data import fingerprint
    from nlu.engine import NLU, _static_files, _static_parts

    first = _read(inbound)
    if first is None or first[0] != "model":
        raise SystemExit("nlu worker: the first frame must be the model")
    lexicon, gazetteer = _static_parts(data_dir, fingerprint(_static_files(data_dir)))
    nlu = NLU(model=first[1], lexicon=lexicon, gazetteer=gazetteer)
    topics: BuiltinModel | None = None
    send_frame(outbound, ("ready", os.getpid()))
    while (message := _read(inbound)) is not None:
        kind, body = message
        if kind == "model":
            nlu.swap(body)
        elif kind == "topics":
            topics = body
        elif kind == "batch":
            # Each answer goes back as soon as it is ready: a message need not wait for the rest of its batch.
            for ident, text in body:
                try:
                    result = nlu.understand_now(text, topics=topics)
                except Exception:  # one bad text must not stop the others; the server retries it
                    log.exception("nlu worker failed on one message")
                    result = None
                send_frame(outbound, ("one", (ident, result)))
            send_frame(outbound, ("end", None))


def main() -> None:
    outbound = begin_child()
    serve(Path(sys.argv[1]), sys.stdin.buffer, outbound)


if __name__ == "__main__":
    main()
