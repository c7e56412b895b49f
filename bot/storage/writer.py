"""The SQLite writer in a process of its own, so that writing never waits for the web server's GIL.

Python's sqlite3 driver lets go of the interpreter lock (GIL) around every call into SQLite and must
take it back afterwards. A writer *thread* beside a busy event loop waits for the loop at each of
those points: on this 2-core machine a writer thread ran 57 times slower than its CPU time beside a
loop running Python flat out, and under the load benchmark every batch took 2.5 times its CPU time,
which set the latency of every message (three round trips each then, two now). ``ProcessRunner`` runs the same
units, with the same group commit (``GroupCommitRunner``'s batching, one transaction per batch, a
failing unit rerun alone), in a child process (``python -m bot.storage.writer URL``) with a GIL of its
own, on the machine's other core; the server only pickles a unit and reads back its result.

Units must therefore be picklable: module-level functions of plain values, bound with
``functools.partial`` (every unit in ``bot.storage.store``, ``bot.outbox`` and ``bot.queue`` is); one
that is not fails at once in the caller, before anything is sent. A result is pickled inside the
unit's transaction, so a result that cannot be sent back fails its unit (rolled back), never after a
commit; an error that cannot be pickled comes back as a RuntimeError naming it.

If the child dies (it never should; a bug, or the OOM killer), every unit in flight fails with an
``OperationalError`` (the webhook's database-error retry path; each unit is one transaction, so it
either committed or did not), and a new child starts at once. Units sent meanwhile wait for it. The
child exits when the server closes its end of the pipe, including when the server is killed, after
finishing (committing) the batch in hand.

A thread of the writer process copies SQLite's write-ahead log into the database file four times a second
(``_checkpoints``), so that no commit of the writer has to.

Frames both ways: a 4-byte big-endian length and a pickle. Only this server's own child is ever
unpickled from.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import select
import sqlite3
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.children import Supervised, begin_child, send_frame

log = logging.getLogger(__name__)
T = TypeVar("T")
UNIT = struct.Struct(">IQ")  # a unit's frame: length, the caller's id, then the pickled unit
MAX_BATCH = 256
CHECKPOINT_EVERY = 0.25  # seconds between checkpoints of the write-ahead log, made beside the writer
BACKSTOP_PAGES = 20_000  # the writer's own automatic checkpoint, only if those fall this far behind (about 80 MB)


class WriterStopped(Exception):
    """The writer process ended with this unit in flight."""


class ProcessRunner(Supervised):
    """SQLite: units of work sent to a writer process that commits them in batches."""

    def __init__(self, url: str, *, start_timeout: float = 60.0) -> None:
        super().__init__("bot.storage.writer", url, pause=0.1, max_pause=5.0, level=logging.ERROR)
        self.start_timeout = start_timeout
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ready = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None and self._ready.is_set() else None

    async def start(self) -> None:
        """Start the writer and wait until it has opened the database."""
        self._begin()
        await asyncio.wait_for(self._ready.wait(), self.start_timeout)

    async def run(self, unit: Callable[[Connection], T]) -> T:
        if not self._ready.is_set():
            await asyncio.wait_for(self._ready.wait(), self.start_timeout)
        ident = next(self._ids)
        payload = pickle.dumps(unit, protocol=pickle.HIGHEST_PROTOCOL)  # not picklable: fails here, nothing sent
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        # Written at once, one write per unit: batching the units of one loop pass into one write (call_soon)
        # made each wait for the loop's next pass, about a millisecond under load, twice on every message's path.
        # The writer still takes whatever has arrived as one batch.
        if self.child is None or not self.child.running:
            self._on_stop()  # gone meanwhile: this unit fails with the others; the supervisor starts another
        else:
            self.child.write(UNIT.pack(len(payload), ident) + payload)
        return await future

    async def close(self) -> None:
        """Stop the writer once the units in flight are answered (it commits its batch in hand, then exits)."""
        if self._waiting:
            await asyncio.wait(list(self._waiting.values()), timeout=30)
        await self._stop_supervising(timeout=30)

    def _on_frame(self, message: tuple[str, Any]) -> None:
        kind, body = message
        if kind == "ready":
            log.info("sqlite writer process ready", extra={"pid": body})
            self._ready.set()
        elif kind == "done":
            for ident, ok, value in body:
                future = self._waiting.pop(ident, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(pickle.loads(value))
                else:
                    future.set_exception(value)

    def _on_stop(self) -> None:
        """The writer is gone: what was in flight fails as a database error (the webhook retries those)."""
        self._ready.clear()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(OperationalError("(sqlite writer process)", None,
                                                      WriterStopped("the writer process stopped")))


# The child.

class _Frames:
    """Length-prefixed frames from a file descriptor: block for one, then take whatever else has arrived."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.closed = False

    def _fill(self, block: bool) -> None:
        if self.closed:
            return
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.closed = True
        self.buffer += chunk

    def _take(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < UNIT.size:
            return None
        size, ident = UNIT.unpack_from(self.buffer)
        if len(self.buffer) < UNIT.size + size:
            return None
        payload = bytes(self.buffer[UNIT.size:UNIT.size + size])
        del self.buffer[:UNIT.size + size]
        return ident, payload

    def batch(self, limit: int) -> list[tuple[int, bytes]] | None:
        """Up to ``limit`` frames (waiting for the first); None once the server has closed the pipe."""
        items: list[tuple[int, bytes]] = []
        while not items:
            while (item := self._take()) is not None:
                items.append(item)
                if len(items) == limit:
                    return items
            if items:
                break
            if self.closed:
                return None
            self._fill(block=True)
        self._fill(block=False)
        while len(items) < limit and (item := self._take()) is not None:
            items.append(item)
        return items


def _pickled(unit: Callable[[Connection], Any]) -> Callable[[Connection], bytes]:
    """``unit`` returning its result pickled, so that a result that cannot be sent back fails the unit
    inside its transaction (rolled back) rather than after its commit."""
    def run(connection: Connection) -> bytes:
        value = unit(connection)
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"a unit's result cannot be sent back from the writer process: "
                            f"{type(value).__name__} ({type(exc).__name__}: {exc})") from None
    return run


def _error(exc: BaseException) -> BaseException:
    """``exc`` if it can be sent back as it is, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # whatever pickle raises, the caller must still hear what failed
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def serve(url: str, inbound: int, outbound: BinaryIO) -> None:
    """Run batches of units from ``inbound`` until it closes; answers go to ``outbound``."""
    from bot.storage.runner import run_batch, writer_engine

    engine = writer_engine(url)
    connection = engine.connect()
    frames = _Frames(inbound)
    stop = threading.Event()
    path = make_url(url).database
    if path and path != ":memory:":
        connection.connection.driver_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        threading.Thread(target=_checkpoints, args=(path, stop), name="wal-checkpoints", daemon=True).start()

    try:
        send_frame(outbound, ("ready", os.getpid()))
        while (batch := frames.batch(MAX_BATCH)) is not None:
            units: list[tuple[int, Callable[[Connection], bytes]]] = []
            answers: list[tuple[int, bool, Any]] = []
            for ident, payload in batch:
                try:
                    units.append((ident, _pickled(pickle.loads(payload))))
                except Exception as exc:  # e.g. a unit from code this process cannot import
                    answers.append((ident, False, RuntimeError(f"unit could not be loaded: {type(exc).__name__}: {exc}")))
            results = run_batch(connection, [unit for _, unit in units]) if units else []
            answers += [(ident, ok, value if ok else _error(value)) for (ident, _), (ok, value) in zip(units, results)]
            send_frame(outbound, ("done", answers))
    finally:
        stop.set()
        connection.close()
        engine.dispose()


def _checkpoints(path: str, stop: threading.Event, every: float = CHECKPOINT_EVERY) -> None:
    """Copy the write-ahead log into the database file every ``every`` seconds, from a connection of its own.

    Left to SQLite, the commit that fills the log past 1,000 pages does the copy itself, fsync included, and
    holds up every unit of its batch for milliseconds (in the load benchmark about once a second). A PASSIVE
    checkpoint neither waits for nor blocks the writer, and the driver lets go of the GIL around it, so the
    writer's thread goes on meanwhile. The writer still checkpoints by itself past BACKSTOP_PAGES, should this
    thread ever fall that far behind."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        while not stop.wait(every):
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next round tries again; the backstop bounds the log meanwhile
                log.warning("WAL checkpoint failed", extra={"error": type(exc).__name__})
    finally:
        db.close()


def main() -> None:
    outbound = begin_child()
    serve(sys.argv[1], sys.stdin.fileno(), outbound)


if __name__ == "__main__":
    main()
