"""Units of work for the writer-process tests: module-level, so they can be sent to another process."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Connection, text


def insert_state(n: int, conn: Connection) -> int:
    conn.execute(text("INSERT INTO kb_state (id, generation, updated_at) VALUES (:n, 0, '2026-01-01')"), {"n": n})
    return n


def insert_then_fail(n: int, conn: Connection) -> None:
    insert_state(n, conn)
    raise ValueError("this unit fails")


def state_ids(conn: Connection) -> list[int]:
    return list(conn.execute(text("SELECT id FROM kb_state ORDER BY id")).scalars())


def insert_returning_unpicklable(n: int, conn: Connection) -> object:
    insert_state(n, conn)
    return threading.Lock()  # cannot be pickled


def writer_pid(conn: Connection) -> int:
    return os.getpid()


def insert_padding(n: int, conn: Connection) -> None:
    conn.execute(text("CREATE TABLE IF NOT EXISTS padding (id INTEGER PRIMARY KEY, body TEXT)"))
    conn.execute(text("INSERT INTO padding (id, body) VALUES (:n, :body)"), {"n": n, "body": "领保" * 700})
